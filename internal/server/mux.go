// Package server is the plumbing the Tempel services share: one listening
// address that serves gRPC and HTTP (REST, KSI PDU v2, the publications
// file, metrics, health), graceful shutdown, and the users file.
package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
)

// http2Preface starts every HTTP/2 connection with prior knowledge, which
// is how gRPC clients speak plaintext HTTP/2.
var http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")

// Options configure [Serve].
type Options struct {
	// ShutdownGrace bounds a graceful shutdown: in-flight calls may finish
	// for this long before their connections are closed.
	ShutdownGrace time.Duration
	// Logger receives the HTTP server's errors.
	Logger *slog.Logger
	// TLS, when set, serves every connection over TLS as [TLSConfig]
	// adjusts it, routed by ALPN instead of first bytes; the gRPC server
	// must then be built with grpc.Creds([GRPCCredentials]()).
	TLS *tls.Config
	// MaxConns bounds the open client connections (0: DefaultMaxConns);
	// Serve lowers it to what the descriptor limit allows (see
	// EffectiveMaxConns) and refuses the excess at once.
	MaxConns int
	// ReadTimeout bounds reading an HTTP/1.1 request's headers and body
	// (0: DefaultReadTimeout), WriteTimeout its answer (0:
	// DefaultWriteTimeout), IdleTimeout a keep-alive HTTP/1.1 connection
	// between requests (0: DefaultIdleTimeout). The gRPC server g brings
	// its own (see the node's keepalive options).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// TLSHandshakeTimeout bounds a TLS handshake, ReadTimeout if that is
	// shorter (0: DefaultTLSHandshakeTimeout).
	TLSHandshakeTimeout time.Duration
	// Metrics, if set, receives the connection counts.
	Metrics prometheus.Registerer
	// Conns, when set, counts the connections against MaxConns together
	// with the other listeners given the same ConnCount (ksi+tcp).
	Conns *ConnCount
}

// Serve answers gRPC and HTTP on one listener until ctx is cancelled, then
// shuts both down gracefully (in-flight calls finish, up to
// opts.ShutdownGrace).
//
// Connections are told apart by their first bytes: the HTTP/2 preface goes
// to the native gRPC server (much faster than gRPC over net/http), and
// everything else to the HTTP/1.1 server.
func Serve(ctx context.Context, ln net.Listener, g *grpc.Server, h http.Handler, opts Options) error {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	opts = opts.withDefaults()
	maxConns, err := connLimit(opts.MaxConns, log)
	if err != nil {
		ln.Close()
		return err
	}
	ln = newLimitListener(ln, maxConns, log, opts.Metrics).sharing(opts.Conns)
	grpcL := newChanListener(ln.Addr())
	httpL := newChanListener(ln.Addr())
	httpL.firstBytes = min(firstBytesTimeout, opts.ReadTimeout)
	if opts.TLS != nil {
		httpL.tls = &tlsRoute{config: TLSConfig(opts.TLS), log: log, timeout: min(opts.TLSHandshakeTimeout, opts.ReadTimeout)}
	}
	hs := &http.Server{Handler: h,
		ReadHeaderTimeout: opts.ReadTimeout, ReadTimeout: opts.ReadTimeout,
		WriteTimeout: opts.WriteTimeout, IdleTimeout: opts.IdleTimeout,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 3)
	go func() { errc <- g.Serve(grpcL) }()
	go func() { errc <- hs.Serve(httpL) }()
	go func() {
		for {
			// Only a closed or broken listener ends this loop: the
			// limit listener retries temporary failures itself.
			c, err := ln.Accept()
			if err != nil {
				errc <- err
				return
			}
			go route(c, grpcL, httpL)
		}
	}()
	select {
	case <-ctx.Done():
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) && !errors.Is(err, http.ErrServerClosed) {
			ln.Close()
			g.Stop()
			hs.Close()
			return err
		}
	}
	ln.Close()
	sctx, cancel := context.WithTimeout(context.Background(), opts.ShutdownGrace)
	defer cancel()
	done := make(chan struct{})
	go func() { g.GracefulStop(); close(done) }()
	herr := hs.Shutdown(sctx)
	select {
	case <-done:
	case <-sctx.Done():
		g.Stop()
	}
	grpcL.Close()
	httpL.Close()
	return herr
}

// firstBytesTimeout bounds the wait for a plaintext connection's first
// bytes (or a TLS handshake, Options.TLSHandshakeTimeout), and so how long a
// client that sends nothing holds a counted connection; a shorter read
// timeout lowers it.
const firstBytesTimeout = 10 * time.Second

// route peeks at the first bytes of a connection and hands it on.
func route(c net.Conn, grpcL, httpL *chanListener) {
	if t := httpL.tls; t != nil {
		routeTLS(tls.Server(c, t.config), grpcL, httpL, t.log, t.timeout)
		return
	}
	c.SetReadDeadline(time.Now().Add(httpL.firstBytes))
	br := bufio.NewReaderSize(c, len(http2Preface))
	head, err := br.Peek(len(http2Preface))
	c.SetReadDeadline(time.Time{})
	pc := &peekedConn{Conn: c, r: br}
	if err == nil && bytes.Equal(head, http2Preface) {
		grpcL.deliver(pc)
		return
	}
	if err != nil && !errors.Is(err, io.EOF) && len(head) == 0 {
		c.Close()
		return
	}
	httpL.deliver(pc)
}

type peekedConn struct {
	net.Conn
	r *bufio.Reader
}

func (p *peekedConn) Read(b []byte) (int, error) { return p.r.Read(b) }

// chanListener is a net.Listener fed by route.
type chanListener struct {
	addr   net.Addr
	conns  chan net.Conn
	once   sync.Once
	closed chan struct{}
	tls    *tlsRoute // set on the HTTP listener when serving TLS
	// firstBytes bounds the wait for a plaintext connection's first
	// bytes (set on the HTTP listener).
	firstBytes time.Duration
}

func newChanListener(addr net.Addr) *chanListener {
	return &chanListener{addr: addr, conns: make(chan net.Conn), closed: make(chan struct{})}
}

func (l *chanListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.closed:
		c.Close()
	}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.closed:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.closed) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }
