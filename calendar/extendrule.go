package calendar

import (
	"errors"
	"fmt"
)

// ErrTimeInFuture refuses an extension to a publication time after the
// calendar's clock: no root can exist for it yet.
var ErrTimeInFuture = errors.New("calendar: publication time is in the future")

// checkExtend applies the rules of an extension request that hold before
// the store is read, for every transport alike (gRPC, REST, PDU).
// pubTime 0 asks for the newest second.
func (s *Service) checkExtend(pubTime uint64) error {
	if now := s.cfg.Now().Unix(); pubTime != 0 && pubTime > uint64(max(now, 0)) {
		return fmt.Errorf("%w: %d > %d", ErrTimeInFuture, pubTime, now)
	}
	return nil
}
