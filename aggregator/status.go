package aggregator

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

// statusTable is the aggregator's one error table, in order: the first
// row with a matching error wins (docs/design/formats.md#status-codes).
// The HTTP statuses are the ones grpc-gateway gives the gRPC codes.
var statusTable = errstatus.Table{
	errstatus.Map(codes.InvalidArgument, pdu.StatusAggrRequestTooLarge, http.StatusBadRequest, ErrLevelTooHigh),
	errstatus.Map(codes.ResourceExhausted, pdu.StatusAggrOverQuota, http.StatusTooManyRequests, ErrOverQuota),
	errstatus.Map(codes.ResourceExhausted, pdu.StatusAggrTooManyRequests, http.StatusTooManyRequests, ErrOverloaded),
	errstatus.Map(codes.InvalidArgument, pdu.StatusInvalidPayload, http.StatusBadRequest, ErrBadRequest),
	errstatus.Map(codes.DeadlineExceeded, pdu.StatusUpstreamTimeout, http.StatusGatewayTimeout, ErrUpstreamTime),
	errstatus.Map(codes.Unavailable, pdu.StatusUpstreamError, http.StatusServiceUnavailable, ErrUpstream, ErrStopped),
	// A caller that gave up: no KSI answer reaches it.
	errstatus.Map(codes.DeadlineExceeded, pdu.StatusInternalError, http.StatusGatewayTimeout, context.DeadlineExceeded),
	errstatus.Map(codes.Canceled, pdu.StatusInternalError, 499, context.Canceled),
}

// StatusOf is how every transport answers an error of the engine; nil is
// OK.
func StatusOf(err error) ErrorStatus {
	return statusTable.Of(err)
}

// Status is the KSI status of an engine error (0 for nil).
func Status(err error) uint64 { return StatusOf(err).KSI }
