package calendar

import (
	"fmt"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

// keyProbeEvery is how often a calendar whose key failed tries it again
// (a token taken out and put back, a network HSM that came back).
const keyProbeEvery = time.Second

// noteKey records the outcome of a signature by the calendar key. While
// the last one failed the calendar is not ready, so that load balancers
// and clients turn to another node instead of having every answer fail;
// the second loop tries the key again (probeKey) until it signs.
func (s *Service) noteKey(err error) {
	s.mu.Lock()
	prev := s.keyFault
	if err != nil {
		s.keyFault = fmt.Errorf("calendar key cannot sign: %w", err)
		s.keyProbed = s.cfg.Now()
	} else {
		s.keyFault = nil
	}
	s.mu.Unlock()
	switch {
	case err != nil && prev == nil:
		s.log.Error("calendar key cannot sign; not ready until it can", "err", err)
	case err == nil && prev != nil:
		s.log.Info("calendar key signs again")
	}
}

// probeKey signs the newest root again, at most once per keyProbeEvery,
// while the key is at fault: no request is let in until it signs, so a
// probe is what finds it back.
func (s *Service) probeKey() {
	s.mu.Lock()
	due := s.keyFault != nil && s.cfg.Now().Sub(s.keyProbed) >= keyProbeEvery
	if due {
		s.keyProbed = s.cfg.Now()
	}
	s.mu.Unlock()
	if !due {
		return
	}
	_, last, ok := s.cfg.Store.Head()
	if !ok {
		return
	}
	chain, err := s.cfg.Store.Chain(last, last)
	if err != nil {
		return
	}
	var h ksi.Hasher
	root, err := chain.Output(&h)
	if err != nil {
		return
	}
	_, err = s.cfg.Signer.SignCalendarRoot(ksi.NewPublishedData(last, root).Raw)
	s.noteKey(err)
}
