package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// DefaultKSITCPMaxInFlight is how many PDUs one ksi+tcp connection may
// have in flight when no limit is configured. libksi's asynchronous
// service sends one request per PDU and keeps as many open as its request
// cache holds (the application sizes it); 1,024 lets a client fill a
// round with one connection, while no single connection can hold more
// than a bounded share of the node (each PDU in flight is also charged
// to the budget of waiting requests).
const DefaultKSITCPMaxInFlight = 1024

// KSITCPPDUCost is what a PDU in flight holds in the budget besides its
// own bytes: the goroutine answering it, its parsed form and a one-request
// answer. (Each aggregation request in it also holds its CostCaller.)
// Measured (TestKSITCPPDUCost in internal/node): a parked one-request PDU
// holds 8.6-9.7 KB in all, less than the 16.5 KB it is charged.
const KSITCPPDUCost = 4 << 10

// Budget is the node's memory budget for waiting requests, as the ksi+tcp
// listener uses it (aggregator.Budget).
type Budget interface {
	Reserve(cost int64) bool
	Release(cost int64)
}

// KSITCPService is one service of the ksi+tcp listener.
type KSITCPService struct {
	Endpoint PDUEndpoint
	// Route is the service's HTTP path (/gt-signingservice): PDUs are
	// authenticated as on that route, and it names the service in logs
	// and metrics.
	Route string
	// RefuseStatus is the status of a request refused for load: 0x106 for
	// signing; extending has no such status and uses 0x200.
	RefuseStatus uint64
}

// KSITCPOptions configure [ServeKSITCP].
type KSITCPOptions struct {
	Services []KSITCPService
	// Auth authenticates every PDU (interface pdu, the service's route).
	Auth   *Authenticator
	Logger *slog.Logger
	// TLS, when set, serves TLS only.
	TLS *tls.Config
	// MaxConns and Conns: the connection limit and the count shared with
	// the main listener (see [Options]).
	MaxConns int
	Conns    *ConnCount
	// MaxInFlight bounds the PDUs in flight per connection (0:
	// DefaultKSITCPMaxInFlight).
	MaxInFlight int
	// IdleTimeout closes a connection with nothing arriving and nothing in
	// flight; ReadTimeout bounds reading one PDU from its first byte;
	// WriteTimeout bounds writing one answer (0: the defaults of [Options]).
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// TLSHandshakeTimeout: see [Options].
	TLSHandshakeTimeout time.Duration
	// ShutdownGrace bounds the answers still being made at shutdown.
	ShutdownGrace time.Duration
	// Budget, if set, holds what PDUs in flight cost.
	Budget Budget
	// Count, if set, counts each PDU by its service's route and the HTTP
	// status its answer has over HTTP (200, 400, 401, 413, 503...).
	Count func(route string, status int)
	// Metrics, if set, receives the connection counts.
	Metrics prometheus.Registerer
}

// ServeKSITCP serves KSI PDU v2 over raw TCP on ln ("ksi+tcp",
// docs/design/formats.md#transports), the transport of the reference tools' `-S ksi+tcp://HOST:PORT` and of libksi's
// asynchronous service (rsyslog's log signing). A connection carries
// request PDUs back to back, each one complete TLV element, signing
// (0x220) and extending (0x320) alike; the server answers each with one
// response PDU (0x221, 0x321) as soon as it is ready, so answers may come
// in another order than their requests: clients match them by request id.
//
// A PDU is answered exactly as over HTTP (the same [PDUEndpoint], the same
// authentication by login and HMAC, the same limits per PDU). On top of
// that, per connection:
//   - at most MaxInFlight PDUs are being answered (read and not yet
//     written back; DefaultKSITCPMaxInFlight); a PDU beyond that is refused
//     at once, each of its requests with status 0x106 (signing) or 0x200
//     (extending), in a response made with the user's key, never queued;
//   - every PDU in flight holds its size and KSITCPPDUCost in the node's
//     budget for waiting requests; when they do not fit, the PDU is
//     refused the same way;
//   - a stream that is not a sequence of request PDUs (a header of any
//     other type: garbage, an HTTP request, a TLV8 element) is answered
//     with a bare error PDU, status 0x101, and the connection is closed:
//     the next PDU's start cannot be found;
//   - the connection is closed when nothing arrives and nothing is in
//     flight for IdleTimeout, when a started PDU is not complete within
//     ReadTimeout, or when an answer cannot be written within
//     WriteTimeout.
//
// The connections count against the node's connection limit together
// with those of the main listener (see [ConnCount]). With TLS the listener
// speaks TLS only.
//
// It serves until ctx is cancelled; then it stops reading, lets the
// answers in flight be written for up to ShutdownGrace, and closes every
// connection.
func ServeKSITCP(ctx context.Context, ln net.Listener, opts KSITCPOptions) error {
	s, err := newKSITCPServer(opts)
	if err != nil {
		ln.Close()
		return err
	}
	ll := newLimitListener(ln, s.maxConns, s.log, nil).sharing(opts.Conns)
	s.log.Info("ksi+tcp: listening", "addr", ln.Addr().String(), "tls", opts.TLS != nil, "max_in_flight", s.maxInFlight)
	errc := make(chan error, 1)
	go func() {
		for {
			c, err := ll.Accept()
			if err != nil {
				errc <- err
				return
			}
			s.start(c)
		}
	}()
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
		if errors.Is(err, net.ErrClosed) {
			err = nil
		}
	}
	ll.Close()
	s.shutdown(opts.ShutdownGrace)
	return err
}

// ksiTCPServer is the state ServeKSITCP shares with its connections.
type ksiTCPServer struct {
	opts        KSITCPOptions
	log         *slog.Logger
	byType      map[uint16]*KSITCPService
	maxConns    int
	maxInFlight int
	m           *ksiTCPMetrics

	mu      sync.Mutex
	conns   map[*ksiConn]struct{}
	closing bool
	wg      sync.WaitGroup
}

func newKSITCPServer(opts KSITCPOptions) (*ksiTCPServer, error) {
	if opts.Auth == nil {
		return nil, errors.New("server: ksi+tcp needs an authenticator")
	}
	o := Options{MaxConns: opts.MaxConns, ReadTimeout: opts.ReadTimeout, WriteTimeout: opts.WriteTimeout, IdleTimeout: opts.IdleTimeout,
		TLSHandshakeTimeout: opts.TLSHandshakeTimeout}.withDefaults()
	opts.ReadTimeout, opts.WriteTimeout, opts.IdleTimeout, opts.TLSHandshakeTimeout = o.ReadTimeout, o.WriteTimeout, o.IdleTimeout, o.TLSHandshakeTimeout
	if opts.MaxInFlight == 0 {
		opts.MaxInFlight = DefaultKSITCPMaxInFlight
	}
	if opts.MaxInFlight < 0 {
		return nil, fmt.Errorf("server: ksi+tcp: at most %d PDUs in flight per connection: must be at least 1", opts.MaxInFlight)
	}
	maxConns, err := MaxConnsAllowed(o.MaxConns)
	if err != nil {
		return nil, err
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	s := &ksiTCPServer{opts: opts, log: log, byType: map[uint16]*KSITCPService{}, maxConns: maxConns,
		maxInFlight: opts.MaxInFlight, conns: map[*ksiConn]struct{}{}, m: newKSITCPMetrics(opts.Metrics, log)}
	if opts.TLS != nil {
		s.opts.TLS = opts.TLS.Clone()
		s.opts.TLS.NextProtos = nil // KSI clients negotiate nothing
	}
	for i := range opts.Services {
		svc := &opts.Services[i]
		s.byType[svc.Endpoint.RequestType()] = svc
	}
	return s, nil
}

// start serves c in its own goroutine, unless the server is shutting down.
func (s *ksiTCPServer) start(c net.Conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing {
		c.Close()
		return
	}
	kc := newKSIConn(s, c)
	s.conns[kc] = struct{}{}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		kc.serve()
		s.mu.Lock()
		delete(s.conns, kc)
		s.mu.Unlock()
	}()
}

// shutdown stops reading on every connection, waits up to grace for the
// answers in flight, then ends them.
func (s *ksiTCPServer) shutdown(grace time.Duration) {
	s.mu.Lock()
	s.closing = true
	for c := range s.conns {
		c.stopReading()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.wg.Wait(); close(done) }()
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case <-done:
		return
	case <-t.C:
	}
	s.mu.Lock()
	for c := range s.conns {
		c.abort(endShutdown)
	}
	s.mu.Unlock()
	<-done
}

// Reasons a connection ends, as logged and counted.
const (
	endEOF          = "eof"           // the client closed it
	endIdle         = "idle"          // nothing for IdleTimeout
	endReadTimeout  = "read-timeout"  // a PDU started and did not complete
	endWriteFailed  = "write-failed"  // an answer could not be written (timeout or broken)
	endBadStream    = "bad-stream"    // not a sequence of request PDUs
	endReadFailed   = "read-failed"   // broken connection
	endShutdown     = "shutdown"      // the server stops
	endTLSHandshake = "tls-handshake" // the TLS handshake failed
)

// answer is one response PDU on its way to the writer; cost is what its
// PDU holds in the budget until it is written (0 for refusals and errors,
// which are not in flight).
type answer struct {
	b        []byte
	cost     int64
	inFlight bool
}

// ksiConn is one ksi+tcp connection: a reader (serve), one goroutine per
// PDU in flight, and a writer.
type ksiConn struct {
	s      *ksiTCPServer
	nc     net.Conn
	remote string
	ctx    context.Context // ends when the connection is given up
	cancel context.CancelFunc
	out    chan answer
	// inFlight counts PDUs read and not yet written back.
	inFlight atomic.Int64
	answers  sync.WaitGroup
	// respType is the response type of the last PDU, for a bare error
	// about the stream.
	respType uint16
	pdus     int

	mu sync.Mutex // guards the deadlines with the two below
	// stopping ends reading (the server stops); ended is why the
	// connection was given up, if it was.
	stopping bool
	ended    string
}

func newKSIConn(s *ksiTCPServer, c net.Conn) *ksiConn {
	ctx, cancel := context.WithCancel(context.Background())
	return &ksiConn{s: s, nc: c, remote: c.RemoteAddr().String(), ctx: ctx, cancel: cancel,
		out: make(chan answer, min(s.maxInFlight+1, ksiTCPQueuedAnswers)), respType: pdu.TypeAggregatorResponse}
}

// ksiTCPQueuedAnswers bounds the answers of one connection waiting for
// the writer. Refusals and error PDUs are not charged to the budget, and a
// refusal of a 64 KB PDU of small requests is larger than the PDU; with a
// queue as long as MaxInFlight, a client that does not read its answers
// could make the node hold MaxInFlight of them per connection. Past this
// many, the reader (for a refusal) and the PDUs in flight (which hold
// their budget) wait for the writer: a client that does not read stalls
// its own stream, until WriteTimeout gives the connection up.
const ksiTCPQueuedAnswers = 64

// serve reads PDUs until the stream ends, then lets the answers in
// flight be written, and closes the connection.
func (c *ksiConn) serve() {
	start := time.Now()
	c.s.m.opened()
	reason := c.handshake()
	writerDone := make(chan struct{})
	go func() { defer close(writerDone); c.write() }()
	if reason == "" {
		reason = c.read()
	}
	c.answers.Wait()
	close(c.out)
	<-writerDone
	if reason == endBadStream {
		c.linger()
	}
	c.nc.Close()
	c.cancel()
	c.s.m.closed(reason)
	c.s.log.Debug("ksi+tcp: connection closed", "remote", c.remote, "reason", reason, "pdus", c.pdus, "took", time.Since(start))
}

// Lingering close after a bad stream: the client gets the error PDU
// before the connection ends, rather than a reset that may discard it
// (closing a socket with unread input resets it).
const (
	lingerTime  = time.Second
	lingerBytes = 64 << 10
)

// linger half-closes the connection and discards what the client still
// sends, within lingerTime and lingerBytes.
func (c *ksiConn) linger() {
	c.mu.Lock()
	nc := c.nc
	c.mu.Unlock()
	closeWrite(nc)
	nc.SetReadDeadline(time.Now().Add(lingerTime))
	io.Copy(io.Discard, io.LimitReader(nc, lingerBytes))
}

// closeWrite sends the end of the stream (FIN, or TLS close_notify).
func closeWrite(nc net.Conn) {
	switch c := nc.(type) {
	case *countedConn:
		closeWrite(c.Conn)
	case interface{ CloseWrite() error }:
		c.CloseWrite()
	}
}

// handshake completes the TLS handshake, if the server has TLS; it
// returns the reason to end the connection when it fails.
func (c *ksiConn) handshake() string {
	if c.s.opts.TLS == nil {
		return ""
	}
	timeout := min(c.s.opts.TLSHandshakeTimeout, c.s.opts.ReadTimeout)
	tc := tls.Server(c.nc, c.s.opts.TLS)
	c.mu.Lock()
	c.nc = tc
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(c.ctx, timeout)
	defer cancel()
	tc.SetDeadline(time.Now().Add(timeout))
	err := tc.HandshakeContext(ctx)
	tc.SetDeadline(time.Time{})
	if err != nil {
		c.s.log.Debug("ksi+tcp: TLS handshake failed", "remote", c.remote, "err", err)
		return endTLSHandshake
	}
	return ""
}

// read reads and dispatches PDUs; it returns why it stopped.
func (c *ksiConn) read() string {
	br := bufio.NewReaderSize(c.nc, 16<<10)
	for {
		if c.isStopping() {
			return c.endReason()
		}
		c.readDeadline(c.s.opts.IdleTimeout)
		frame, typ, err := ReadKSIFrame(br, c.accepts, func() { c.readDeadline(c.s.opts.ReadTimeout) })
		if err != nil {
			if reason, again := c.readFailed(err); !again {
				return reason
			}
			continue
		}
		c.pdus++
		c.dispatch(frame, c.s.byType[typ])
	}
}

// accepts reports whether a PDU header starts a request PDU this server
// answers.
func (c *ksiConn) accepts(typ uint16, tlv16 bool) bool {
	return tlv16 && c.s.byType[typ] != nil
}

// readFailed decides what a failed read means: the reason to stop, or
// again=true when the connection was only quiet while answers are in
// flight (it is not idle then).
func (c *ksiConn) readFailed(err error) (reason string, again bool) {
	var bad *FrameError
	var ne net.Error
	switch {
	case c.isStopping():
		return c.endReason(), false
	case errors.As(err, &bad):
		c.send(answer{b: ErrorPDU(c.respType, pdu.StatusInvalidRequest, "server: ksi+tcp: "+bad.Error()+"; closing the connection")})
		c.s.log.Debug("ksi+tcp: not a request PDU stream, closing", "remote", c.remote, "err", bad)
		return endBadStream, false
	case errors.Is(err, io.EOF):
		return endEOF, false
	case errors.As(err, &ne) && ne.Timeout() && errors.Is(err, errStarted):
		return endReadTimeout, false
	case errors.As(err, &ne) && ne.Timeout():
		if c.inFlight.Load() > 0 {
			return "", true
		}
		return endIdle, false
	}
	return endReadFailed, false
}

// dispatch answers one PDU in its own goroutine, or refuses it at once
// when the connection or the node has no room for it.
func (c *ksiConn) dispatch(frame []byte, svc *KSITCPService) {
	c.respType = svc.Endpoint.ResponseType()
	auth := c.auth(svc.Route)
	if c.inFlight.Load() >= int64(c.s.maxInFlight) {
		c.refuse(frame, svc, auth, "in-flight", fmt.Sprintf(
			"server: %d PDUs already in flight on this ksi+tcp connection (the limit): wait for answers before sending more", c.s.maxInFlight))
		return
	}
	cost := int64(len(frame)) + KSITCPPDUCost
	if b := c.s.opts.Budget; b != nil && !b.Reserve(cost) {
		c.refuse(frame, svc, auth, "memory", "server: overloaded: the node's memory for waiting requests is in use, try again shortly")
		return
	}
	c.inFlight.Add(1)
	c.s.m.inFlight.Add(1)
	c.answers.Add(1)
	go func() {
		defer c.answers.Done()
		b, code := c.answer(svc, frame, auth)
		c.count(svc, code)
		c.send(answer{b: b, cost: cost, inFlight: true})
	}()
}

// answer answers one PDU. A panic in the service is logged and
// answered 0x200, as net/http does for an HTTP PDU, rather than ending
// the process.
func (c *ksiConn) answer(svc *KSITCPService, frame []byte, auth PDUAuth) (b []byte, code int) {
	defer func() {
		if p := recover(); p != nil {
			c.s.log.Error("ksi+tcp: panic answering a PDU", "route", svc.Route, "remote", c.remote, "panic", p, "stack", string(debug.Stack()))
			b, code = ErrorPDU(svc.Endpoint.ResponseType(), pdu.StatusInternalError, "server: internal error"), http.StatusInternalServerError
		}
	}()
	return svc.Endpoint.AnswerPDU(c.ctx, frame, auth)
}

// refuse answers frame at once with svc's refusal status.
func (c *ksiConn) refuse(frame []byte, svc *KSITCPService, auth PDUAuth, why, msg string) {
	c.s.m.refused(why)
	b, code := svc.Endpoint.RefusePDU(frame, auth, svc.RefuseStatus, msg)
	c.count(svc, code)
	c.send(answer{b: b})
}

// auth authenticates a PDU as one sent to route over HTTP would be.
func (c *ksiConn) auth(route string) PDUAuth {
	return func(env *pdu.Envelope) ([]byte, error) {
		id, err := c.s.opts.Auth.Authenticate(AuthRequest{Interface: IfacePDU, Route: route, Remote: c.remote, PDU: env})
		return id.Key, err
	}
}

func (c *ksiConn) count(svc *KSITCPService, code int) {
	if c.s.opts.Count != nil && code != 0 {
		c.s.opts.Count(svc.Route, code)
	}
}

// send hands a to the writer; once the connection is given up, a is
// dropped (and what it holds released).
func (c *ksiConn) send(a answer) {
	if a.b == nil {
		c.done(a)
		return
	}
	select {
	case c.out <- a:
	case <-c.ctx.Done():
		c.done(a)
	}
}

// done releases what an answer's PDU held.
func (c *ksiConn) done(a answer) {
	if b := c.s.opts.Budget; b != nil && a.cost != 0 {
		b.Release(a.cost)
	}
	if a.inFlight {
		c.inFlight.Add(-1)
		c.s.m.inFlight.Add(-1)
	}
}

// write writes answers as they come, flushing whenever none is waiting.
// After a failed write it gives the connection up: the reader and the
// answers in flight stop, and later answers are dropped.
func (c *ksiConn) write() {
	bw := bufio.NewWriterSize(c.nc, 16<<10)
	failed := false
	for a := range c.out {
		if !failed && !c.writeDeadline() {
			failed = true
		}
		if !failed {
			_, err := bw.Write(a.b)
			if err == nil && len(c.out) == 0 {
				err = bw.Flush()
			}
			if err != nil {
				failed = true
				c.s.log.Debug("ksi+tcp: could not write an answer, closing", "remote", c.remote, "err", err)
				c.abort(endWriteFailed)
			}
		}
		c.done(a)
	}
}

// readDeadline sets the read deadline d from now, unless the server is
// stopping the connection.
func (c *ksiConn) readDeadline(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.stopping {
		c.nc.SetReadDeadline(time.Now().Add(d))
	}
}

// writeDeadline sets the write deadline for one answer; false when the
// connection was given up.
func (c *ksiConn) writeDeadline() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended != "" {
		return false
	}
	c.nc.SetWriteDeadline(time.Now().Add(c.s.opts.WriteTimeout))
	return true
}

// stopReading makes the reader stop at once (the server stops); the
// answers in flight are still written.
func (c *ksiConn) stopReading() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.stopping = true
	c.nc.SetReadDeadline(time.Unix(1, 0))
}

func (c *ksiConn) isStopping() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopping
}

// endReason is why reading stopped on the server's side.
func (c *ksiConn) endReason() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.ended != "" {
		return c.ended
	}
	return endShutdown
}

// abort gives the connection up for reason: reads and writes fail at
// once, answers in flight are cancelled.
func (c *ksiConn) abort(reason string) {
	c.mu.Lock()
	c.stopping = true
	if c.ended == "" {
		c.ended = reason
	}
	c.nc.SetDeadline(time.Unix(1, 0))
	c.mu.Unlock()
	c.cancel()
}

// ksiTCPMetrics are the listener's connection counts.
type ksiTCPMetrics struct {
	accepted prometheus.Counter
	open     prometheus.Gauge
	inFlight prometheus.Gauge
	ended    *prometheus.CounterVec
	refusals *prometheus.CounterVec
}

func newKSITCPMetrics(reg prometheus.Registerer, log *slog.Logger) *ksiTCPMetrics {
	m := &ksiTCPMetrics{
		accepted: prometheus.NewCounter(prometheus.CounterOpts{Name: "tempel_ksitcp_connections_total",
			Help: "ksi+tcp connections accepted (within the connection limit)."}),
		open: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tempel_ksitcp_connections_open",
			Help: "ksi+tcp connections open."}),
		inFlight: prometheus.NewGauge(prometheus.GaugeOpts{Name: "tempel_ksitcp_pdus_in_flight",
			Help: "ksi+tcp PDUs read and not yet answered, all connections."}),
		ended: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tempel_ksitcp_connections_closed_total",
			Help: "ksi+tcp connections closed, by reason (eof, idle, read-timeout, write-failed, bad-stream, read-failed, shutdown, tls-handshake)."},
			[]string{"reason"}),
		refusals: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tempel_ksitcp_refused_total",
			Help: "ksi+tcp PDUs refused at once, by reason (in-flight: the connection's limit; memory: the node's budget)."},
			[]string{"reason"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.accepted, m.open, m.inFlight, m.ended, m.refusals} {
			if err := reg.Register(c); err != nil {
				log.Warn("ksi+tcp metrics not exported", "err", err)
			}
		}
	}
	return m
}

func (m *ksiTCPMetrics) opened() { m.accepted.Inc(); m.open.Inc() }

func (m *ksiTCPMetrics) closed(reason string) {
	m.open.Dec()
	m.ended.WithLabelValues(reason).Inc()
}

func (m *ksiTCPMetrics) refused(why string) { m.refusals.WithLabelValues(why).Inc() }
