package client

import (
	"context"
	"errors"
	"fmt"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// Errors callers branch on. Each is wrapped with the operation, the
// endpoint and the server's message; test with [errors.Is].
var (
	// ErrUnauthenticated: the server refused the credentials (gRPC
	// Unauthenticated or PermissionDenied, KSI status 0x102). Retrying
	// does not help; fix Login and Key.
	ErrUnauthenticated = errors.New("client: not authenticated")
	// ErrOverloaded: the server sheds load (gRPC ResourceExhausted, KSI
	// status 0x105 over quota or 0x106 too many requests). Back off and
	// retry later, or batch with SignMany.
	ErrOverloaded = errors.New("client: server overloaded")
	// ErrUnavailable: no endpoint answered in time, or the server's
	// upstream failed (gRPC Unavailable or DeadlineExceeded of one call,
	// KSI status 0x300, 0x301). Retrying later may help.
	ErrUnavailable = errors.New("client: service unavailable")
	// ErrInvalid: the server refused the request as malformed (gRPC
	// InvalidArgument, KSI status 0x101, 0x103, 0x104, 0x107), or the
	// client refused it before sending. Retrying does not help.
	ErrInvalid = errors.New("client: invalid request")
	// ErrOutOfRange: the calendar does not cover a requested time yet, or
	// no longer (gRPC OutOfRange), typically extending to a publication
	// time the calendar has not reached. Retry later or pick another time.
	ErrOutOfRange = errors.New("client: time outside the calendar")
	// ErrBadResponse: the server's answer does not fit the request: an
	// unparsable or internally invalid signature, or a calendar chain that
	// fails a check (see [ChainMismatchError]). Report it to the operator.
	ErrBadResponse = errors.New("client: bad response from server")
	// ErrClosed: the Client or Stream was closed.
	ErrClosed = errors.New("client: closed")
)

// ChainMismatchError reports which check an extender's calendar chain
// failed. It wraps [ErrBadResponse].
type ChainMismatchError struct {
	// Check names the failed check: "input hash", "aggregation time",
	// "publication time", "right links" or "output hash".
	Check     string
	Got, Want string
}

func (e *ChainMismatchError) Error() string {
	return fmt.Sprintf("client: extend: calendar chain %s is %s, want %s", e.Check, e.Got, e.Want)
}

// Unwrap returns [ErrBadResponse].
func (e *ChainMismatchError) Unwrap() error { return ErrBadResponse }

// codeErr maps a gRPC status code to the sentinel callers branch on.
func codeErr(c codes.Code) error {
	switch c {
	case codes.Unauthenticated, codes.PermissionDenied:
		return ErrUnauthenticated
	case codes.ResourceExhausted:
		return ErrOverloaded
	case codes.Unavailable, codes.DeadlineExceeded:
		return ErrUnavailable
	case codes.InvalidArgument:
		return ErrInvalid
	case codes.OutOfRange:
		return ErrOutOfRange
	}
	return nil
}

// rpcErr wraps a failed call's error. The caller's own cancellation or
// deadline is returned as such; a mapped gRPC code wraps its sentinel and
// keeps the server's message; anything else keeps the gRPC status error.
func rpcErr(ctx context.Context, op, endpoint string, err error) error {
	if cerr := ctx.Err(); cerr != nil {
		return fmt.Errorf("client: %s via %s: %w", op, endpoint, cerr)
	}
	st, ok := status.FromError(err)
	if !ok {
		return fmt.Errorf("client: %s via %s: %w", op, endpoint, err)
	}
	sentinel := codeErr(st.Code())
	switch {
	case sentinel == nil:
		return fmt.Errorf("client: %s via %s: %w", op, endpoint, err)
	case st.Code() == codes.DeadlineExceeded:
		return fmt.Errorf("%w: %s via %s: %w: %s", sentinel, op, endpoint, context.DeadlineExceeded, st.Message())
	}
	return fmt.Errorf("%w: %s via %s: %s", sentinel, op, endpoint, st.Message())
}

// statusErr maps the KSI status of a failed SignStream request.
func statusErr(endpoint string, st uint32, msg string) error {
	var sentinel error
	switch uint64(st) {
	case pdu.StatusAuthFailure:
		sentinel = ErrUnauthenticated
	case pdu.StatusAggrOverQuota, pdu.StatusAggrTooManyRequests:
		sentinel = ErrOverloaded
	case pdu.StatusUpstreamError, pdu.StatusUpstreamTimeout:
		sentinel = ErrUnavailable
	case pdu.StatusInvalidRequest, pdu.StatusInvalidPayload, pdu.StatusAggrRequestTooLarge, pdu.StatusAggrInputTooLong:
		sentinel = ErrInvalid
	default:
		return fmt.Errorf("client: stream sign via %s: status %#x: %s", endpoint, st, msg)
	}
	return fmt.Errorf("%w: stream sign via %s: status %#x: %s", sentinel, endpoint, st, msg)
}
