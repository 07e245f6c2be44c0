package server

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultMaxConns bounds the open client connections when no limit is
// given. Each costs a descriptor, a goroutine or two and the HTTP/2
// buffers of the gRPC server (tens of KiB): 10,000 fit in memory and in
// a raised descriptor limit, and are far more than a signing service's
// clients need (a gRPC client multiplexes its calls on one connection).
const DefaultMaxConns = 10_000

// MinFDReserve is the least number of the process's descriptors
// (RLIMIT_NOFILE) kept out of reach of client connections; the reserve is
// a quarter of the limit when that is more (see [EffectiveMaxConns]). It
// covers the calendar's Pebble store (WAL, MANIFEST, lock, and the tables
// it opens: at 101 bytes a second the store grows about 3 GB a year, some
// 25 tables of up to 128 MiB), the users and key files, the listener, the
// epoll descriptor, the standard streams, the connection to an upstream
// parent, and the descriptor a refused connection holds for the moment it
// takes to close it. A store that runs out of descriptors stops the
// calendar, so connections must never take the last ones.
const MinFDReserve = 256

// fdReserve is the reserve under a descriptor limit of nofile.
func fdReserve(nofile uint64) uint64 { return max(MinFDReserve, nofile/4) }

// Accept backoff: after a failed accept the loop waits acceptBackoffMin,
// doubling up to acceptBackoffMax, so that a process out of descriptors
// neither spins nor gives up.
const (
	acceptBackoffMin = 5 * time.Millisecond
	acceptBackoffMax = time.Second
)

// EffectiveMaxConns lowers requested to what the descriptor limit allows:
// nofile minus a reserve of a quarter of it, at least [MinFDReserve]. It
// fails when the limit leaves no descriptor for clients. nofile 0 means
// the limit is unknown (then requested holds).
func EffectiveMaxConns(requested int, nofile uint64) (int, error) {
	if requested <= 0 {
		return 0, fmt.Errorf("server: the connection limit must be at least 1, got %d", requested)
	}
	if nofile == 0 {
		return requested, nil
	}
	reserve := fdReserve(nofile)
	if nofile <= reserve {
		return 0, fmt.Errorf("server: the descriptor limit (RLIMIT_NOFILE %d) leaves none for client connections after the %d reserved for the store and files: raise it (ulimit -n)", nofile, reserve)
	}
	if avail := nofile - reserve; uint64(requested) > avail {
		return int(avail), nil
	}
	return requested, nil
}

// MaxConnsAllowed is [EffectiveMaxConns] for this process's descriptor
// limit: the connection limit Serve will apply.
func MaxConnsAllowed(requested int) (int, error) {
	return EffectiveMaxConns(requested, nofileLimit())
}

// connLimit is the connection limit Serve applies, logged with how it
// was found.
func connLimit(requested int, log *slog.Logger) (int, error) {
	nofile := nofileLimit()
	n, err := EffectiveMaxConns(requested, nofile)
	if err != nil {
		return 0, err
	}
	attrs := []any{"max_conns", n, "requested", requested, "rlimit_nofile", nofile, "fd_reserve", fdReserve(nofile)}
	if n < requested {
		log.Warn("client connection limit lowered to fit the descriptor limit (raise ulimit -n for more)", attrs...)
	} else {
		log.Info("client connection limit", attrs...)
	}
	return n, nil
}

// limitListener counts the connections it hands out over their whole
// life (until whoever holds them closes them), refuses those beyond max
// at once, and retries failed accepts with a backoff instead of failing.
// One goroutine calls Accept.
type limitListener struct {
	net.Listener
	max  int64
	low  int64 // below this many open, a full listener logs that it admits again
	log  *slog.Logger
	open *atomic.Int64 // shared with the listeners of the same ConnCount
	// Totals for the metrics.
	refusedTotal, acceptErrors atomic.Uint64

	// The state of the limit and of accept failures belongs to the
	// Accept goroutine.
	full        bool
	refused     int
	failing     bool
	failures    int
	lastFailure time.Time
	quiet       time.Duration // without failures for this long, an outage is over

	closeOnce sync.Once
	closed    chan struct{}
}

// newLimitListener wraps ln; reg, if not nil, receives its metrics.
func newLimitListener(ln net.Listener, limit int, log *slog.Logger, reg prometheus.Registerer) *limitListener {
	l := &limitListener{Listener: ln, max: int64(limit), low: int64(limit) - int64(limit)/10, log: log,
		quiet: acceptBackoffMax, closed: make(chan struct{}), open: new(atomic.Int64)}
	if reg != nil {
		if err := l.registerMetrics(reg); err != nil {
			log.Warn("connection metrics not exported", "err", err)
		}
	}
	return l
}

// Accept returns the next connection within the limit. It returns an
// error only when the listener is closed or fails for good.
func (l *limitListener) Accept() (net.Conn, error) {
	var delay time.Duration
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if !temporaryAcceptError(err) {
				return nil, err
			}
			l.acceptFailed(err)
			delay = min(max(2*delay, acceptBackoffMin), acceptBackoffMax)
			if !l.sleep(delay) {
				return nil, net.ErrClosed
			}
			continue
		}
		delay = 0
		l.accepted()
		if !l.admit() {
			refuse(c)
			continue
		}
		return &countedConn{Conn: c, l: l}, nil
	}
}

// acceptFailed notes a temporary failure. One line per outage, not one
// per attempt: out of descriptors, accept fails hundreds of times, and
// succeeds now and then as connections close.
func (l *limitListener) acceptFailed(err error) {
	l.failures++
	l.acceptErrors.Add(1)
	l.lastFailure = time.Now()
	if !l.failing {
		l.failing = true
		l.log.Warn("accept failing, retrying with backoff", "err", err, "open_conns", l.open.Load())
	}
}

// accepted ends an outage once accepts have succeeded for a quiet period.
func (l *limitListener) accepted() {
	if l.failing && time.Since(l.lastFailure) >= l.quiet {
		l.log.Info("accepting connections again", "failed_accepts", l.failures, "open_conns", l.open.Load())
		l.failing, l.failures = false, 0
	}
}

// admit counts a new connection if the limit allows it.
func (l *limitListener) admit() bool {
	n := l.open.Add(1)
	if n > l.max {
		l.open.Add(-1)
		l.refused++
		l.refusedTotal.Add(1)
		if !l.full {
			l.full = true
			l.log.Warn("connection limit reached, refusing new connections", "max_conns", l.max)
		}
		return false
	}
	if l.full && n <= l.low {
		l.full = false
		l.log.Info("below the connection limit again, admitting connections", "refused", l.refused, "open_conns", n)
		l.refused = 0
	}
	return true
}

// refuse closes a connection beyond the limit at once. Linger 0 resets
// it: the client learns immediately, and the socket leaves no state
// behind on the server.
func refuse(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

// sleep waits d or until the listener is closed; it reports whether the
// listener is still open.
func (l *limitListener) sleep(d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-l.closed:
		return false
	}
}

func (l *limitListener) Close() error {
	l.closeOnce.Do(func() { close(l.closed) })
	return l.Listener.Close()
}

// countedConn gives its place back when closed (once, however often
// Close is called).
type countedConn struct {
	net.Conn
	l    *limitListener
	done atomic.Bool
}

func (c *countedConn) Close() error {
	if c.done.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// temporaryAcceptError reports whether a failed accept may succeed later:
// the process or system is out of descriptors or buffers, or the peer
// went away before the connection was taken.
func temporaryAcceptError(err error) bool {
	if errors.Is(err, net.ErrClosed) {
		return false
	}
	if temporaryErrno(err) {
		return true
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	var te interface{ Temporary() bool }
	return errors.As(err, &te) && te.Temporary()
}

// ConnCount is the count of open connections that several listeners
// share under one limit (--max-conns): the node's main listener and its
// ksi+tcp listener, so that together they never take the descriptors
// kept for the store.
type ConnCount struct{ n atomic.Int64 }

// sharing makes l count its connections in c (nil: its own count). It
// is called before l accepts.
func (l *limitListener) sharing(c *ConnCount) *limitListener {
	if c != nil {
		l.open = &c.n
	}
	return l
}
