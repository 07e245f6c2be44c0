package calendar

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// ErrorStatus is how every transport answers one error: its gRPC code, its
// KSI extender status (PDU over HTTP and ksi+tcp) and the HTTP status of
// REST.
type ErrorStatus struct {
	GRPC codes.Code
	KSI  uint64
	HTTP int
}

// statusRow maps the errors that match one of errs (errors.Is).
type statusRow struct {
	errs []error
	ErrorStatus
}

// statusTable is the calendar's one error table, in order: the first row
// with a matching error wins (docs/design/formats.md#status-codes). The
// KSI statuses are the extender's; an error of signing (the calendar role
// signs child aggregators' roots over gRPC only) has no KSI status of its
// own and is 0x200. The HTTP statuses are the ones grpc-gateway gives the
// gRPC codes.
var statusTable = []statusRow{
	{[]error{ErrLevelTooHigh}, ErrorStatus{codes.InvalidArgument, pdu.StatusInternalError, http.StatusBadRequest}},
	{[]error{ErrOverloaded}, ErrorStatus{codes.ResourceExhausted, pdu.StatusInternalError, http.StatusTooManyRequests}},
	{[]error{ErrBadRange}, ErrorStatus{codes.OutOfRange, pdu.StatusExtInvalidTimeRange, http.StatusBadRequest}},
	{[]error{ErrTimeTooOld}, ErrorStatus{codes.OutOfRange, pdu.StatusExtTimeTooOld, http.StatusBadRequest}},
	{[]error{ErrTimeTooNew, ErrEmpty}, ErrorStatus{codes.OutOfRange, pdu.StatusExtTimeTooNew, http.StatusBadRequest}},
	{[]error{ErrTimeInFuture}, ErrorStatus{codes.OutOfRange, pdu.StatusExtTimeInFuture, http.StatusBadRequest}},
	{[]error{ErrCorrupt}, ErrorStatus{codes.Internal, pdu.StatusExtDatabaseCorrupt, http.StatusInternalServerError}},
	{[]error{ErrFailed}, ErrorStatus{codes.Unavailable, pdu.StatusExtDatabaseMissing, http.StatusServiceUnavailable}},
	{[]error{ErrStopped, ErrNotReady}, ErrorStatus{codes.Unavailable, pdu.StatusInternalError, http.StatusServiceUnavailable}},
	// A caller that gave up: no KSI answer reaches it.
	{[]error{context.DeadlineExceeded}, ErrorStatus{codes.DeadlineExceeded, pdu.StatusInternalError, http.StatusGatewayTimeout}},
	{[]error{context.Canceled}, ErrorStatus{codes.Canceled, pdu.StatusInternalError, 499}},
}

// statusInternal answers an error no row names.
var statusInternal = ErrorStatus{codes.Internal, pdu.StatusInternalError, http.StatusInternalServerError}

// StatusOf is how every transport answers an error of the calendar
// service; nil is OK.
func StatusOf(err error) ErrorStatus {
	if err == nil {
		return ErrorStatus{codes.OK, pdu.StatusOK, http.StatusOK}
	}
	for i := range statusTable {
		for _, e := range statusTable[i].errs {
			if errors.Is(err, e) {
				return statusTable[i].ErrorStatus
			}
		}
	}
	return statusInternal
}
