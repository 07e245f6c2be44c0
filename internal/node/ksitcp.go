package node

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// KSI PDU v2 over raw TCP (`--ksi-tcp-listen`): the node's signing and
// extending PDU endpoints, the very ones /gt-signingservice and
// /gt-extendingservice serve, on a second listener (see
// [server.ServeKSITCP]). Its connections count against --max-conns with
// the main listener's, its PDUs hold their cost in the budget of waiting
// requests, and it speaks TLS when the node does.

// pduEndpoints builds the node's PDU endpoints once, for HTTP and
// ksi+tcp alike: both transports then share the aggregator's learnt
// response bound.
func (n *Node) pduEndpoints() {
	if n.agg != nil {
		n.pduSign = n.agg.PDUHandler(n.auth)
	}
	if n.cal != nil {
		n.pduExtend = n.cal.ExtenderPDUHandler(n.auth)
	}
}

// listenKSITCP opens the ksi+tcp listener when one is configured.
func (n *Node) listenKSITCP() error {
	if n.cfg.KSITCPListen == "" {
		return nil
	}
	ln, err := net.Listen("tcp", n.cfg.KSITCPListen)
	if err != nil {
		return fmt.Errorf("ksi+tcp: %w", err)
	}
	n.tcpLn, n.tcpAddr = ln, ln.Addr()
	return nil
}

// KSITCPAddr is the address of the ksi+tcp listener, nil without one.
func (n *Node) KSITCPAddr() net.Addr { return n.tcpAddr }

// serveKSITCP serves the ksi+tcp listener, if there is one, until ctx
// ends; wait returns once its connections are closed.
func (n *Node) serveKSITCP(ctx context.Context) (wait func()) {
	if n.tcpLn == nil {
		return func() {}
	}
	opts := server.KSITCPOptions{Auth: n.auth, Logger: n.log, TLS: n.tls, MaxConns: n.cfg.MaxConns, Conns: n.conns,
		MaxInFlight: n.cfg.KSITCPMaxInFlight, ReadTimeout: n.cfg.ReadTimeout, WriteTimeout: n.cfg.WriteTimeout,
		IdleTimeout: n.cfg.IdleTimeout, ShutdownGrace: 10 * time.Second, Metrics: n.reg,
		Count: func(route string, code int) { n.metrics.count("ksi-tcp", routeLabel(route), strconv.Itoa(code)) }}
	if n.pduSign != nil {
		opts.Services = append(opts.Services, server.KSITCPService{Endpoint: n.pduSign, Route: "/gt-signingservice",
			RefuseStatus: pdu.StatusAggrTooManyRequests})
	}
	if n.pduExtend != nil {
		opts.Services = append(opts.Services, server.KSITCPService{Endpoint: n.pduExtend, Route: "/gt-extendingservice",
			RefuseStatus: pdu.StatusInternalError})
	}
	if n.agg != nil {
		opts.Budget = n.agg.Budget()
	} else {
		opts.Budget = aggregator.NewBudget(requestBudget(n.cfg.MaxMemory))
	}
	done := make(chan struct{})
	ln := n.tcpLn
	n.tcpLn = nil // Serve closes it
	go func() {
		defer close(done)
		if err := server.ServeKSITCP(ctx, ln, opts); err != nil {
			n.log.Error("ksi+tcp listener failed", "err", err)
		}
	}()
	return func() { <-done }
}
