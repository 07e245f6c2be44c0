package node

import (
	"context"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/tempel-ksi/tempel/internal/server"
)

// KSI PDU v2 over raw TCP (`--ksi-tcp-listen`): the node's signing and
// extending PDU endpoints, the very ones /gt-signingservice and
// /gt-extendingservice serve, on a second listener (see
// [server.ServeKSITCP]). Its connections count against --max-conns with
// the main listener's, its PDUs hold their cost in the budget of waiting
// requests, and it speaks TLS when the node does.

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
		IdleTimeout: n.cfg.IdleTimeout, ShutdownGrace: 10 * time.Second, Metrics: n.reg, Services: n.h.pdu, Budget: n.h.budget,
		Count: func(route string, code int) { n.metrics.count("ksi-tcp", routeLabel(route), strconv.Itoa(code)) }}
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
