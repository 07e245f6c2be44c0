package calendar

import "fmt"

// SetClockFault records why the clock is not to be trusted (an NTP
// check found it off or could not check it), or nil when it is again.
// While it is set the calendar is not ready: submissions are refused
// with ErrNotReady and the reason, and those already waiting for a
// second are failed, since their second would be read from that clock.
// No second is closed while it is set (see closeDue).
func (s *Service) SetClockFault(err error) {
	s.mu.Lock()
	prev := s.clockFault
	s.clockFault = err
	s.mu.Unlock()
	if err != nil && prev == nil {
		s.failAll(fmt.Errorf("%w: %v", ErrNotReady, err))
	}
}
