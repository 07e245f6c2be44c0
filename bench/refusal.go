package bench

import (
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// KSI statuses of a request refused for load (docs/design/formats.md#status-codes).
const (
	ksiOverQuota       = 0x105
	ksiTooManyRequests = 0x106
)

// refusedError is an answer in which the server declined a request for
// load rather than failing it: HTTP 429, KSI status 0x105 or 0x106, gRPC
// RESOURCE_EXHAUSTED. Refusals count among a run's errors and, apart, in
// Result.Refused, so that an overload run tells what the server refused
// from what went wrong.
type refusedError struct{ msg string }

func (e *refusedError) Error() string { return e.msg }

// isRefusal reports whether err is the server refusing for load.
func isRefusal(err error) bool {
	var re *refusedError
	return errors.As(err, &re) || status.Code(err) == codes.ResourceExhausted
}

// ksiStatusError is the error of a KSI status other than 0: a refusal
// for 0x105 and 0x106.
func ksiStatusError(st uint64, msg string) error {
	s := fmt.Sprintf("status %#x: %s", st, msg)
	if st == ksiOverQuota || st == ksiTooManyRequests {
		return &refusedError{s}
	}
	return errors.New(s)
}
