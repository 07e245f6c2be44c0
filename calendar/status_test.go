package calendar

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
)

// TestStatusOf checks the calendar's one status table: the extender's
// KSI status (docs/design/formats.md#status-codes) and the gRPC code of
// every error of the service, wrapped or not.
func TestStatusOf(t *testing.T) {
	for _, tc := range []struct {
		err  error
		ksi  uint64
		grpc codes.Code
	}{
		{nil, 0, codes.OK},
		{ErrBadRange, 0x104, codes.OutOfRange},
		{ErrTimeTooOld, 0x105, codes.OutOfRange},
		{fmt.Errorf("%w: 9 > 8", ErrTimeTooNew), 0x106, codes.OutOfRange},
		{ErrEmpty, 0x106, codes.OutOfRange},
		{fmt.Errorf("%w: 9 > 8", ErrTimeInFuture), 0x107, codes.OutOfRange},
		{ErrCorrupt, 0x202, codes.Internal},
		{ErrFailed, 0x201, codes.Unavailable},
		{ErrOverloaded, 0x200, codes.ResourceExhausted},
		{ErrStopped, 0x200, codes.Unavailable},
		{ErrNotReady, 0x200, codes.Unavailable},
		// A replicated calendar's refusals are for now and this member:
		// another member, or a retry, may sign.
		{fmt.Errorf("%w: the leader is member 2", ErrNotLeader), 0x200, codes.Unavailable},
		{fmt.Errorf("%w: second 9 within 3s", ErrNotCommitted), 0x200, codes.Unavailable},
		{context.Canceled, 0x200, codes.Canceled},
		{errors.New("other"), 0x200, codes.Internal},
	} {
		if got := StatusOf(tc.err); got.KSI != tc.ksi || got.GRPC != tc.grpc {
			t.Errorf("StatusOf(%v) = %#x %s, want %#x %s", tc.err, got.KSI, got.GRPC, tc.ksi, tc.grpc)
		}
	}
}
