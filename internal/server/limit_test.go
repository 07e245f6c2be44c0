package server

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

// logBuffer collects log lines; safe for the Accept goroutine and the test.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *logBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// lines returns the logged lines that contain s.
func (b *logBuffer) lines(s string) []string {
	var out []string
	for _, l := range strings.Split(b.String(), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

func testLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	return slog.New(slog.NewTextHandler(b, nil)), b
}

// faultListener fails its first n accepts with err, as accept(2) does
// when the process is out of descriptors, then accepts for real.
type faultListener struct {
	net.Listener
	mu    sync.Mutex
	n     int // failures left; <0 fails for ever
	err   error
	calls int
}

func (f *faultListener) Accept() (net.Conn, error) {
	f.mu.Lock()
	f.calls++
	fail := f.n != 0
	if f.n > 0 {
		f.n--
	}
	f.mu.Unlock()
	if fail {
		return nil, f.err
	}
	return f.Listener.Accept()
}

func emfile() error {
	return &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", syscall.EMFILE)}
}

func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

func dial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

type accepted struct {
	c   net.Conn
	err error
}

// acceptOnce runs one Accept in the background.
func acceptOnce(l net.Listener) <-chan accepted {
	ch := make(chan accepted, 1)
	go func() {
		c, err := l.Accept()
		ch <- accepted{c, err}
	}()
	return ch
}

func TestAcceptBacksOffAndRecovers(t *testing.T) {
	ln := listen(t)
	const failures = 4
	fl := &faultListener{Listener: ln, n: failures, err: emfile()}
	log, logged := testLogger()
	l := newLimitListener(fl, 10, log, nil)
	l.quiet = 200 * time.Millisecond
	start := time.Now()
	ch := acceptOnce(l)
	dial(t, ln.Addr().String())
	var a accepted
	select {
	case a = <-ch:
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not recover from EMFILE")
	}
	if a.err != nil {
		t.Fatalf("Accept after EMFILE: %v", a.err)
	}
	defer a.c.Close()
	// 5, 10, 20 and 40 ms between the five attempts.
	if took := time.Since(start); took < 75*time.Millisecond {
		t.Errorf("four failures retried within %s: no backoff", took)
	}
	fl.mu.Lock()
	calls := fl.calls
	fl.mu.Unlock()
	if calls != failures+1 {
		t.Errorf("%d accept calls, want %d", calls, failures+1)
	}
	if got := logged.lines("accept failing"); len(got) != 1 || !strings.Contains(got[0], "too many open files") {
		t.Errorf("want one line for the outage, with its error; got %q", got)
	}
	// Out of descriptors, accepts fail and succeed by turns as
	// connections close: still one outage.
	fl.mu.Lock()
	fl.n = 2
	fl.mu.Unlock()
	ch = acceptOnce(l)
	dial(t, ln.Addr().String())
	if a := <-ch; a.err != nil {
		t.Fatal(a.err)
	} else {
		a.c.Close()
	}
	if got := logged.lines("accept failing"); len(got) != 1 {
		t.Errorf("an outage with successes between failures logged %d lines, want 1: %q", len(got), got)
	}
	// The outage is over once accepts have worked for the quiet period.
	if got := logged.lines("accepting connections again"); len(got) != 0 {
		t.Errorf("recovery logged before the quiet period: %q", got)
	}
	time.Sleep(l.quiet)
	ch = acceptOnce(l)
	dial(t, ln.Addr().String())
	if a := <-ch; a.err != nil {
		t.Fatal(a.err)
	} else {
		a.c.Close()
	}
	if got := logged.lines("accepting connections again"); len(got) != 1 || !strings.Contains(got[0], "failed_accepts=6") {
		t.Errorf("want one line for the recovery, with the failure count; got %q", got)
	}
	if n := l.acceptErrors.Load(); n != 6 {
		t.Errorf("%d accept errors counted, want 6", n)
	}
}

func TestAcceptBackoffIsBounded(t *testing.T) {
	var d time.Duration
	for range 20 {
		d = min(max(2*d, acceptBackoffMin), acceptBackoffMax)
	}
	if d != acceptBackoffMax {
		t.Fatalf("backoff grew to %s, want at most %s", d, acceptBackoffMax)
	}
}

func TestAcceptCloseDuringBackoff(t *testing.T) {
	fl := &faultListener{Listener: listen(t), n: -1, err: emfile()}
	log, _ := testLogger()
	l := newLimitListener(fl, 10, log, nil)
	ch := acceptOnce(l)
	// Wait until the backoff has reached its longer sleeps, then close.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fl.mu.Lock()
		calls := fl.calls
		fl.mu.Unlock()
		if calls >= 6 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Accept stopped retrying")
		}
		time.Sleep(5 * time.Millisecond)
	}
	l.Close()
	select {
	case a := <-ch:
		if !errors.Is(a.err, net.ErrClosed) {
			t.Fatalf("Accept after Close: %v, want net.ErrClosed", a.err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not interrupt the backoff")
	}
}

func TestAcceptPermanentError(t *testing.T) {
	broken := errors.New("listener broken")
	log, _ := testLogger()
	l := newLimitListener(&faultListener{Listener: listen(t), n: -1, err: broken}, 10, log, nil)
	if _, err := l.Accept(); !errors.Is(err, broken) {
		t.Fatalf("Accept: %v, want the permanent error", err)
	}
}

func TestTemporaryAcceptError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want bool
	}{
		{emfile(), true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ENFILE)}, true},
		{&net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.ECONNABORTED)}, true},
		{net.ErrClosed, false},
		{&net.OpError{Op: "accept", Err: net.ErrClosed}, false},
		{errors.New("other"), false},
	} {
		if got := temporaryAcceptError(tc.err); got != tc.want {
			t.Errorf("temporaryAcceptError(%v) = %v, want %v", tc.err, got, tc.want)
		}
	}
}

// refused connects to addr and reports whether the server closed the
// connection without a word. A reset can arrive before connect returns.
func refused(t *testing.T, addr string) bool {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return errors.Is(err, syscall.ECONNRESET)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err = c.Read(make([]byte, 1))
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return false
	}
	return err != nil
}

func TestConnLimitRefusesExcess(t *testing.T) {
	ln := listen(t)
	log, logged := testLogger()
	reg := prometheus.NewRegistry()
	l := newLimitListener(ln, 2, log, reg)
	conns := make(chan net.Conn, 10)
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			conns <- c
		}
	}()
	defer l.Close()
	next := func() net.Conn {
		t.Helper()
		select {
		case c := <-conns:
			return c
		case <-time.After(5 * time.Second):
			t.Fatal("connection within the limit not accepted")
			return nil
		}
	}
	addr := ln.Addr().String()
	dial(t, addr)
	a := next()
	dial(t, addr)
	b := next()
	defer b.Close()
	if n := l.open.Load(); n != 2 {
		t.Fatalf("%d open, want 2", n)
	}
	for range 3 {
		if !refused(t, addr) {
			t.Fatal("a connection beyond the limit was not closed at once")
		}
	}
	select {
	case c := <-conns:
		t.Fatalf("a connection beyond the limit was handed out: %v", c.RemoteAddr())
	default:
	}
	if got := logged.lines("connection limit reached"); len(got) != 1 {
		t.Errorf("want one line when the limit is reached, got %q", got)
	}
	// Closing twice frees one place, once.
	a.Close()
	a.Close()
	if n := l.open.Load(); n != 1 {
		t.Fatalf("%d open after closing one of two, want 1", n)
	}
	dial(t, addr)
	c := next()
	defer c.Close()
	if got := logged.lines("admitting connections"); len(got) != 1 || !strings.Contains(got[0], "refused=3") {
		t.Errorf("want one line when admitting again, with the refused count; got %q", got)
	}
	want := `
# HELP tempel_connections_open Client connections open.
# TYPE tempel_connections_open gauge
tempel_connections_open 2
# HELP tempel_connections_refused_total Client connections closed at once because the limit was reached.
# TYPE tempel_connections_refused_total counter
tempel_connections_refused_total 3
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "tempel_connections_open", "tempel_connections_refused_total"); err != nil {
		t.Error(err)
	}
}

func TestEffectiveMaxConns(t *testing.T) {
	for _, tc := range []struct {
		requested int
		nofile    uint64
		want      int
		err       bool
	}{
		{10_000, 0, 10_000, false},       // limit unknown
		{10_000, 1 << 20, 10_000, false}, // plenty of descriptors
		{10_000, 512, 512 - MinFDReserve, false},
		{10_000, 1024, 1024 - MinFDReserve, false},
		{10_000, 4096, 3072, false},     // a quarter kept
		{10_000, 20_000, 10_000, false}, // 15,000 allowed
		{100, 1024, 100, false},
		{10_000, MinFDReserve, 0, true}, // nothing left for clients
		{0, 1024, 0, true},
	} {
		got, err := EffectiveMaxConns(tc.requested, tc.nofile)
		if (err != nil) != tc.err || got != tc.want {
			t.Errorf("EffectiveMaxConns(%d, %d) = %d, %v; want %d, error %v", tc.requested, tc.nofile, got, err, tc.want, tc.err)
		}
	}
}

func TestEffectiveMaxConnsKeepsReserve(t *testing.T) {
	if nofileLimit() == 0 {
		t.Skip("no descriptor limit on this system")
	}
	// Asked for more than the process's descriptors, the limit still
	// keeps the reserve.
	got, err := EffectiveMaxConns(int(^uint(0)>>1), nofileLimit())
	if err != nil {
		t.Skipf("descriptor limit too low for this test: %v", err)
	}
	if want := nofileLimit() - fdReserve(nofileLimit()); uint64(got) != want {
		t.Fatalf("limit %d with RLIMIT_NOFILE %d, want %d", got, nofileLimit(), want)
	}
}
