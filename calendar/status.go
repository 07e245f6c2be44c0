package calendar

import (
	"context"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tempel-ksi/tempel/internal/errstatus"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// ErrorStatus is how every transport answers one error (package
// errstatus).
type ErrorStatus = errstatus.Status

// statusTable is the calendar's one error table, in order: the first row
// with a matching error wins (docs/design/formats.md#status-codes). The
// KSI statuses are the extender's; an error of signing (the calendar role
// signs child aggregators' roots over gRPC only) has no KSI status of its
// own and is 0x200. The HTTP statuses are the ones grpc-gateway gives the
// gRPC codes.
var statusTable = errstatus.Table{
	errstatus.Map(codes.InvalidArgument, pdu.StatusInternalError, http.StatusBadRequest, ErrLevelTooHigh),
	errstatus.Map(codes.ResourceExhausted, pdu.StatusInternalError, http.StatusTooManyRequests, ErrOverloaded),
	errstatus.Map(codes.OutOfRange, pdu.StatusExtInvalidTimeRange, http.StatusBadRequest, ErrBadRange),
	errstatus.Map(codes.OutOfRange, pdu.StatusExtTimeTooOld, http.StatusBadRequest, ErrTimeTooOld),
	errstatus.Map(codes.OutOfRange, pdu.StatusExtTimeTooNew, http.StatusBadRequest, ErrTimeTooNew, ErrEmpty),
	errstatus.Map(codes.OutOfRange, pdu.StatusExtTimeInFuture, http.StatusBadRequest, ErrTimeInFuture),
	errstatus.Map(codes.Internal, pdu.StatusExtDatabaseCorrupt, http.StatusInternalServerError, ErrCorrupt),
	errstatus.Map(codes.Unavailable, pdu.StatusExtDatabaseMissing, http.StatusServiceUnavailable, ErrFailed),
	errstatus.Map(codes.Unavailable, pdu.StatusInternalError, http.StatusServiceUnavailable, ErrStopped, ErrNotReady),
	// A member of a replicated calendar that does not lead, or a second
	// the cluster did not commit in time: another member, or a retry,
	// signs; not a fault of this server.
	errstatus.Map(codes.Unavailable, pdu.StatusInternalError, http.StatusServiceUnavailable, ErrNotLeader, ErrNotCommitted),
	// A caller that gave up: no KSI answer reaches it.
	errstatus.Map(codes.DeadlineExceeded, pdu.StatusInternalError, http.StatusGatewayTimeout, context.DeadlineExceeded),
	errstatus.Map(codes.Canceled, pdu.StatusInternalError, 499, context.Canceled),
}

// StatusOf is how every transport answers an error of the calendar
// service; nil is OK.
func StatusOf(err error) ErrorStatus {
	return statusTable.Of(err)
}
