package aggregator

import (
	"context"
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// ErrorStatus is how every transport answers one error: its gRPC code, its
// KSI status (PDU over HTTP and ksi+tcp, and the status field of a stream's
// answer) and the HTTP status of REST.
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

// statusTable is the aggregator's one error table, in order: the first
// row with a matching error wins (docs/design/formats.md#status-codes).
// The HTTP statuses are the ones grpc-gateway gives the gRPC codes.
var statusTable = []statusRow{
	{[]error{ErrLevelTooHigh}, ErrorStatus{codes.InvalidArgument, pdu.StatusAggrRequestTooLarge, http.StatusBadRequest}},
	{[]error{ErrOverQuota}, ErrorStatus{codes.ResourceExhausted, pdu.StatusAggrOverQuota, http.StatusTooManyRequests}},
	{[]error{ErrOverloaded}, ErrorStatus{codes.ResourceExhausted, pdu.StatusAggrTooManyRequests, http.StatusTooManyRequests}},
	{[]error{ErrBadRequest}, ErrorStatus{codes.InvalidArgument, pdu.StatusInvalidPayload, http.StatusBadRequest}},
	{[]error{ErrUpstreamTime}, ErrorStatus{codes.DeadlineExceeded, pdu.StatusUpstreamTimeout, http.StatusGatewayTimeout}},
	{[]error{ErrUpstream, ErrStopped}, ErrorStatus{codes.Unavailable, pdu.StatusUpstreamError, http.StatusServiceUnavailable}},
	// A caller that gave up: no KSI answer reaches it.
	{[]error{context.DeadlineExceeded}, ErrorStatus{codes.DeadlineExceeded, pdu.StatusInternalError, http.StatusGatewayTimeout}},
	{[]error{context.Canceled}, ErrorStatus{codes.Canceled, pdu.StatusInternalError, 499}},
}

// statusInternal answers an error no row names.
var statusInternal = ErrorStatus{codes.Internal, pdu.StatusInternalError, http.StatusInternalServerError}

// StatusOf is how every transport answers an error of the engine; nil is
// OK.
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

// Status is the KSI status of an engine error (0 for nil).
func Status(err error) uint64 { return StatusOf(err).KSI }
