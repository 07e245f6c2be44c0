// Package errstatus maps a service's errors to how every transport
// answers them: one table per service (aggregator, calendar), each row an
// error's gRPC code, KSI status and REST HTTP status, so that gRPC, REST,
// KSI PDU over HTTP and ksi+tcp refuse the same request the same way.
package errstatus

import (
	"errors"
	"net/http"

	"google.golang.org/grpc/codes"

	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// Status is how every transport answers one error: its gRPC code, its KSI
// status (PDU over HTTP and ksi+tcp, and the status field of a stream's
// answer) and the HTTP status of REST.
type Status struct {
	GRPC codes.Code
	KSI  uint64
	HTTP int
}

// Row maps the errors that match one of Errs (errors.Is) to its Status.
type Row struct {
	Errs []error
	Status
}

// Table is a service's error table, in order: the first row with a
// matching error wins.
type Table []Row

// OK is the status of no error; Internal that of an error no row names.
var (
	OK       = Status{GRPC: codes.OK, KSI: pdu.StatusOK, HTTP: http.StatusOK}
	Internal = Status{GRPC: codes.Internal, KSI: pdu.StatusInternalError, HTTP: http.StatusInternalServerError}
)

// Of is how every transport answers err: OK for nil, the first matching
// row's status, else Internal.
func (t Table) Of(err error) Status {
	if err == nil {
		return OK
	}
	for i := range t {
		for _, e := range t[i].Errs {
			if errors.Is(err, e) {
				return t[i].Status
			}
		}
	}
	return Internal
}

// Map is the row that answers each of errs with (grpc, ksi, http).
func Map(grpc codes.Code, ksi uint64, http int, errs ...error) Row {
	return Row{Errs: errs, Status: Status{GRPC: grpc, KSI: ksi, HTTP: http}}
}
