package node

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
)

// TestGRPCErrorCodes checks the gRPC code of every service error a caller
// may branch on: quota and overload are RESOURCE_EXHAUSTED, extend ranges
// OUT_OF_RANGE, a stopped or failed service UNAVAILABLE.
func TestGRPCErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{aggregator.ErrOverQuota, codes.ResourceExhausted},
		{aggregator.ErrOverloaded, codes.ResourceExhausted},
		{calendar.ErrOverloaded, codes.ResourceExhausted},
		{fmt.Errorf("wrapped: %w", aggregator.ErrBadRequest), codes.InvalidArgument},
		{aggregator.ErrLevelTooHigh, codes.InvalidArgument},
		{aggregator.ErrUpstreamTime, codes.DeadlineExceeded},
		{aggregator.ErrUpstream, codes.Unavailable},
		{calendar.ErrFailed, codes.Unavailable},
		{calendar.ErrTimeTooNew, codes.OutOfRange},
		{calendar.ErrBadRange, codes.OutOfRange},
		{context.Canceled, codes.Canceled},
		{errors.New("other"), codes.Internal},
	} {
		if got := status.Code(grpcError(tc.err)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}
