package node

import (
	"context"
	"errors"
	"fmt"
	"net/http"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// A node is built from the parts its role has. New picks them once
// (signing by the aggregator engine or by the calendar, and the
// calendar's services when the node has a calendar) into one handler set;
// the transports serve whatever the set holds and never ask which role
// the node has.

// signer signs the hash of one unary call (gRPC and REST Sign): the
// aggregator engine in its next round, or, role calendar, the calendar in
// the open second's top tree, for a child aggregator.
type signer interface {
	sign(ctx context.Context, r aggregator.Request) signed
}

// signed is a unary call's answer: a signature or why there is none.
type signed struct {
	sig      []byte
	aggrTime uint64
	err      error
}

// engineSigner is the aggregator engine as a signer.
type engineSigner struct{ e *aggregator.Engine }

func (s engineSigner) sign(ctx context.Context, r aggregator.Request) signed {
	x := s.e.Sign(ctx, r)
	return signed{sig: x.Signature, aggrTime: x.AggregationTime, err: x.Err}
}

// handlers is what a node serves.
type handlers struct {
	signer signer
	// signErr turns the signer's errors into gRPC errors, through its
	// service's status table.
	signErr func(error) error
	// signerSvc serves the Signer API on gRPC and REST.
	signerSvc tempelv1.SignerServer
	// grpc registers the services beyond Signer and Health, rest the same
	// services on the REST gateway.
	grpc []func(*grpc.Server)
	rest []func(context.Context, *runtime.ServeMux) error
	// routes are the HTTP routes beyond REST, metrics and health.
	routes []route
	// pdu are the KSI PDU endpoints, served on HTTP (on their routes)
	// and on ksi+tcp.
	pdu []server.KSITCPService
	// budget is the budget of waiting requests: what ksi+tcp's PDUs
	// hold, and (with the engine) what signing requests hold.
	budget *aggregator.Budget
	// admitsSign decides, in the gRPC tap, whether a Sign call may start;
	// overloaded says why the node refuses requests for lack of memory,
	// calReady why its calendar does not answer (nil: it does).
	admitsSign func() bool
	overloaded func() error
	calReady   func() error
	// loops run while the node serves: the signing loops stop first (the
	// engine's last round still needs the calendar), then calLoops.
	loops, calLoops []func(context.Context)
}

type route struct {
	pattern string
	h       http.Handler
}

func noError() error { return nil }
func admitAll() bool { return true }

// roleParts are the steps, in order, that open the parts of the node's
// role and add what they serve to its handler set.
func (n *Node) roleParts() ([]func() error, error) {
	n.h = handlers{admitsSign: admitAll, overloaded: noError, calReady: noError}
	switch n.cfg.Role {
	case RoleAll:
		// The calendar's one client is the in-process aggregator.
		local := func() error {
			up, err := n.calendarUpstream()
			if err != nil {
				return err
			}
			return n.openAggregator(up)
		}
		return []func() error{n.openCalendar, local, n.withEngine, n.withCalendar, n.withTSA}, nil
	case RoleCalendar:
		return []func() error{n.openCalendar, n.withCalendarSigner, n.withCalendar}, nil
	case RoleAggregator:
		if n.cfg.Upstream == "" {
			return nil, errors.New("role aggregator needs --upstream ADDR (the parent's gRPC address)")
		}
		remote := func() error {
			up, err := n.dialUpstream()
			if err != nil {
				return err
			}
			return n.openAggregator(up)
		}
		return []func() error{remote, n.withEngine}, nil
	}
	return nil, fmt.Errorf("unknown role %q (want all, calendar or aggregator)", n.cfg.Role)
}

// withEngine signs with the aggregator engine: unary calls, streams, PDUs.
func (n *Node) withEngine() error {
	agg := n.agg
	b := agg.Budget()
	n.h.signer, n.h.signErr, n.h.signerSvc = engineSigner{agg}, aggError, &signerService{n: n}
	n.h.budget = b
	n.h.admitsSign = func() bool { return b.AdmitsCaller() }
	n.h.overloaded = b.Overloaded
	n.h.pdu = append(n.h.pdu, server.KSITCPService{Endpoint: agg.PDUHandler(n.auth), Route: "/gt-signingservice",
		RefuseStatus: pdu.StatusAggrTooManyRequests})
	n.h.loops = append(n.h.loops, func(ctx context.Context) { agg.Run(ctx) }, n.returnMemory, n.evictStuck)
	return nil
}

// withCalendarSigner signs child aggregators' roots with the calendar
// (role calendar): unary calls only.
func (n *Node) withCalendarSigner() error {
	n.h.signer, n.h.signErr = calendarSigner{cal: n.cal}, calendarSignError
	n.h.signerSvc = &calendarSignerService{&signerService{n: n}}
	// ksi+tcp's PDUs hold their cost in a budget of their own.
	n.h.budget = aggregator.NewBudget(requestBudget(n.cfg.MaxMemory))
	return nil
}

// withCalendar serves the calendar's services: extending, the calendar
// head and the publications.
func (n *Node) withCalendar() error {
	ext, pubs := &extenderService{n: n}, &publicationsService{n: n}
	n.h.grpc = append(n.h.grpc, func(g *grpc.Server) {
		tempelv1.RegisterExtenderServer(g, ext)
		tempelv1.RegisterPublicationsServer(g, pubs)
	})
	n.h.rest = append(n.h.rest, func(ctx context.Context, gw *runtime.ServeMux) error {
		if err := tempelv1.RegisterExtenderHandlerServer(ctx, gw, ext); err != nil {
			return err
		}
		return tempelv1.RegisterPublicationsHandlerServer(ctx, gw, pubs)
	})
	n.h.routes = append(n.h.routes, route{"/publications.bin", http.HandlerFunc(n.servePublicationsFile)})
	n.h.pdu = append(n.h.pdu, server.KSITCPService{Endpoint: n.cal.ExtenderPDUHandler(n.auth), Route: "/gt-extendingservice",
		RefuseStatus: pdu.StatusInternalError})
	n.h.calReady = n.calendarReady
	n.h.calLoops = append(n.h.calLoops, n.runCalendar, func(ctx context.Context) { n.pub.Run(ctx) })
	return nil
}

// closeCalendarFiles closes the calendar's store and watermark, as far as
// openCalendar opened them; it returns the store's error.
func (n *Node) closeCalendarFiles() error {
	if n.mark != nil {
		n.mark.Close()
	}
	if n.store != nil {
		return n.store.Close()
	}
	return nil
}

// runCalendar runs the calendar's second loop. A failed calendar stops
// answering; Ready reports why and the node keeps serving health,
// metrics and verification.
func (n *Node) runCalendar(ctx context.Context) {
	if err := n.cal.Run(ctx); err != nil {
		n.log.Error("calendar stopped", "err", err)
	}
}

// calendarSigner is the calendar as a signer (role calendar).
type calendarSigner struct{ cal *calendar.Service }

// errBadRoot refuses a root that is not an imprint.
type errBadRoot struct{ error }

func (c calendarSigner) sign(ctx context.Context, r aggregator.Request) signed {
	if _, err := ksi.ParseImprint(r.Hash); err != nil {
		return signed{err: errBadRoot{err}}
	}
	sig, err := c.cal.Sign(ctx, r.Hash, r.Level, r.Identity.ClientID)
	return signed{sig: sig, err: err}
}

// calendarSignerService is the Signer API of role calendar: its child
// aggregators call Sign once a round.
type calendarSignerService struct{ *signerService }

var errUnaryOnly = status.Error(codes.Unimplemented, "the calendar role signs unary calls only")

func (calendarSignerService) SignStream(grpc.BidiStreamingServer[tempelv1.SignRequest, tempelv1.SignResponse]) error {
	return errUnaryOnly
}

func (calendarSignerService) SignBatchStream(grpc.BidiStreamingServer[tempelv1.SignBatch, tempelv1.SignResponseBatch]) error {
	return errUnaryOnly
}

// serviceError is a service's error with its row of the service's status
// table: gRPC reads its code, the REST gateway its HTTP status.
type serviceError struct {
	st   *status.Status
	http int
}

func (e *serviceError) Error() string              { return e.st.Err().Error() }
func (e *serviceError) GRPCStatus() *status.Status { return e.st }

// aggError is an engine error as gRPC and REST answer it.
func aggError(err error) error {
	if err == nil {
		return nil
	}
	s := aggregator.StatusOf(err)
	return &serviceError{status.New(s.GRPC, err.Error()), s.HTTP}
}

// calError is a calendar error as gRPC and REST answer it.
func calError(err error) error {
	if err == nil {
		return nil
	}
	s := calendar.StatusOf(err)
	return &serviceError{status.New(s.GRPC, err.Error()), s.HTTP}
}

// calendarSignError is calError, and a root that is no imprint is an
// invalid argument.
func calendarSignError(err error) error {
	if errors.As(err, new(errBadRoot)) {
		return &serviceError{status.New(codes.InvalidArgument, err.Error()), http.StatusBadRequest}
	}
	return calError(err)
}

// restError answers a REST call's error with the HTTP status of its
// service's status table, the gateway's body otherwise.
func restError(ctx context.Context, mux *runtime.ServeMux, m runtime.Marshaler, w http.ResponseWriter, r *http.Request, err error) {
	var se *serviceError
	if errors.As(err, &se) {
		w = &statusWriter{ResponseWriter: w, code: se.http}
	}
	runtime.DefaultHTTPErrorHandler(ctx, mux, m, w, r, err)
}

// statusWriter writes code whatever status its handler writes.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(int) { w.ResponseWriter.WriteHeader(w.code) }
