package cli_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/cli"
	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
)

// Attack sizes: 5,000 connections against a server allowed 512
// descriptors, of which it keeps 256 for itself.
const (
	floodConns  = 5000
	floodNofile = 512
	// Short timeouts keep the test quick: every attack connection must be
	// closed by the server within floodClosed.
	floodReadTimeout = 2 * time.Second
	floodIdleTimeout = 3 * time.Second
	floodClosed      = 40 * time.Second
)

// TestServeSurvivesConnectionFlood runs `tempel serve` as a child process
// under `ulimit -n 512` and opens 5,000 connections that send nothing,
// stop after the HTTP/2 preface, stop after the HTTP/2 handshake, or
// drip an HTTP/1.1 body a byte at a time. Clients connected before the
// flood keep signing over gRPC and REST throughout; the server refuses
// what is beyond its connection limit, closes every attack connection
// within its timeouts, never runs out of descriptors, stays alive, and
// signs for new clients afterwards.
func TestServeSurvivesConnectionFlood(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a server and opens 5,000 connections")
	}
	if runtime.GOOS != "linux" {
		t.Skip("relies on ulimit -n and Linux socket behaviour")
	}
	raiseNofile(t, floodConns+1000)
	bin, err := exec.LookPath("tempel")
	if err != nil {
		t.Fatal(err)
	}
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	var logs syncBuffer
	cmd := exec.Command("sh", "-c", fmt.Sprintf(`ulimit -n %d && exec "$0" "$@"`, floodNofile), bin, "serve",
		"--data-dir", t.TempDir(), "--listen", addr, "--publish-every", "1s",
		"--read-timeout", floodReadTimeout.String(), "--idle-timeout", floodIdleTimeout.String())
	cmd.Stdout, cmd.Stderr = io.Discard, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	alive := func(when string) {
		t.Helper()
		select {
		case err := <-exited:
			t.Fatalf("server exited %s: %v\n%s", when, err, logs.String())
		default:
		}
	}
	waitServing(t, addr, exited, &logs)
	// The log arrives through a pipe: wait for it rather than read it
	// once.
	want := fmt.Sprintf("max_conns=%d", floodNofile-256)
	waitFor(t, 10*time.Second, "the server to log its connection limit "+want, func() bool { return strings.Contains(logs.String(), want) })

	// The legitimate clients connect before the flood and sign until it
	// is over.
	grpcClient, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer grpcClient.Close()
	restClient := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	defer restClient.CloseIdleConnections()
	ctx, stopSigning := context.WithCancel(context.Background())
	var signers sync.WaitGroup
	var flooding atomic.Bool
	grpcSigns, restSigns := &signLog{}, &signLog{}
	signers.Add(2)
	go func() {
		defer signers.Done()
		signLoop(ctx, grpcSigns, &flooding, func(i int) error { _, err := grpcClient.Sign(ctx, floodHash("grpc", i)); return err })
	}()
	go func() {
		defer signers.Done()
		signLoop(ctx, restSigns, &flooding, func(i int) error { return restSign(ctx, restClient, addr, floodHash("rest", i)) })
	}()
	defer func() { stopSigning(); signers.Wait() }()
	waitFor(t, 30*time.Second, "the first signatures", func() bool { return grpcSigns.ok.Load() > 0 && restSigns.ok.Load() > 0 })

	flooding.Store(true)
	start := time.Now()
	results := flood(addr)
	flooding.Store(false)
	t.Logf("flood of %d connections over in %s: %s", floodConns, time.Since(start).Round(time.Millisecond), results)
	alive("during the flood")
	if results.open > 0 {
		t.Errorf("%d attack connections still open after %s: held for ever", results.open, floodClosed)
	}
	if results.dialErr > 0 {
		t.Errorf("%d of %d connections failed to connect: the server stopped accepting", results.dialErr, floodConns)
	}
	stopSigning()
	signers.Wait()
	for _, s := range []struct {
		name string
		log  *signLog
	}{{"gRPC", grpcSigns}, {"REST", restSigns}} {
		if err := s.log.firstErr(); err != nil {
			t.Errorf("%s signing failed: %v", s.name, err)
		}
		t.Logf("%s client: %d signatures during the flood, %d in all", s.name, s.log.duringFlood.Load(), s.log.ok.Load())
		if n := s.log.duringFlood.Load(); n < 2 {
			t.Errorf("%s client signed %d times during the flood, want several", s.name, n)
		}
	}
	// Every connection reset at connect was refused by the limit, and
	// the metrics say so.
	if n := metric(t, addr, "tempel_connections_refused_total"); n < float64(results.refused) || n == 0 {
		t.Errorf("tempel_connections_refused_total %v, but %d connections were reset at connect", n, results.refused)
	}
	waitFor(t, 10*time.Second, "the server to log that it refuses connections",
		func() bool { return strings.Contains(logs.String(), "connection limit reached") })
	if strings.Contains(logs.String(), "accept failing") {
		t.Errorf("the server ran out of descriptors although its limit keeps a reserve:\n%s", logs.String())
	}

	// Afterwards a new client connects and signs.
	alive("after the flood")
	fresh, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer fresh.Close()
	if _, err := fresh.Sign(context.Background(), floodHash("after", 0)); err != nil {
		t.Fatalf("new gRPC client after the flood: %v\n%s", err, logs.String())
	}
	if err := restSign(context.Background(), &http.Client{Timeout: 10 * time.Second}, addr, floodHash("after", 1)); err != nil {
		t.Fatalf("new REST client after the flood: %v", err)
	}
	waitFor(t, 10*time.Second, "the server to log that it admits connections again",
		func() bool { return strings.Contains(logs.String(), "below the connection limit again") })
	alive("at the end")
}

// metric reads one unlabelled metric from the server's /metrics.
func metric(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err != nil {
				t.Fatalf("%s: %v", line, err)
			}
			return f
		}
	}
	t.Fatalf("/metrics has no %s", name)
	return 0
}

// raiseNofile makes sure this process may open need descriptors.
func raiseNofile(t *testing.T, need uint64) {
	t.Helper()
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
	if r.Cur >= need {
		return
	}
	if r.Max < need {
		t.Skipf("needs %d descriptors, the hard limit is %d", need, r.Max)
	}
	r.Cur = r.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		t.Fatal(err)
	}
}

// waitServing polls /readyz until the server answers.
func waitServing(t *testing.T, addr string, exited <-chan error, logs *syncBuffer) {
	t.Helper()
	hc := &http.Client{Timeout: time.Second}
	waitFor(t, readyTimeout, "the server to be ready", func() bool {
		select {
		case err := <-exited:
			t.Fatalf("server exited at start: %v\n%s", err, logs.String())
		default:
		}
		resp, err := hc.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", limit, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func floodHash(kind string, i int) ksi.Imprint {
	d := sha256.Sum256(fmt.Appendf(nil, "%s %d", kind, i))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, d[:]...)
}

func restSign(ctx context.Context, hc *http.Client, addr string, h ksi.Imprint) error {
	body := fmt.Sprintf(`{"hash":"SHA-256:%s"}`, hex.EncodeToString(h[1:]))
	req, err := http.NewRequestWithContext(ctx, "POST", "http://"+addr+"/v1/sign", strings.NewReader(body))
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || !bytes.Contains(b, []byte(`"signature"`)) {
		return fmt.Errorf("REST sign: %s %.200s", resp.Status, b)
	}
	return nil
}

// signLog counts a legitimate client's signatures.
type signLog struct {
	ok, duringFlood atomic.Int64
	mu              sync.Mutex
	err             error
}

func (s *signLog) firstErr() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// signLoop signs one hash after the other until ctx ends.
func signLoop(ctx context.Context, s *signLog, flooding *atomic.Bool, sign func(i int) error) {
	for i := 0; ctx.Err() == nil; i++ {
		during := flooding.Load()
		if err := sign(i); err != nil {
			if ctx.Err() != nil {
				return
			}
			s.mu.Lock()
			if s.err == nil {
				s.err = fmt.Errorf("signature %d: %w", i, err)
			}
			s.mu.Unlock()
			continue
		}
		s.ok.Add(1)
		if during && flooding.Load() {
			s.duringFlood.Add(1)
		}
	}
}

// floodResults counts how the attack connections ended.
type floodResults struct {
	refused, dialErr, closed, open int
	lastErr                        error
	slowest                        [len(attackKinds)]time.Duration
}

func (r floodResults) String() string {
	var last []string
	for k, d := range r.slowest {
		last = append(last, fmt.Sprintf("%s %s", attackKinds[k], d.Round(time.Millisecond)))
	}
	return fmt.Sprintf("%d closed by the server (the last of each kind after: %s), %d reset at connect, %d failed to connect (%v), %d still open",
		r.closed, strings.Join(last, ", "), r.refused, r.dialErr, r.lastErr, r.open)
}

// attackKinds name the kinds of attack connection (see attack).
var attackKinds = [...]string{"silent", "HTTP/2 preface", "idle HTTP/2", "dripping HTTP/1.1 body"}

// Attack connection kinds.
var (
	http2Preface = []byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	// An empty SETTINGS frame completes the client's side of the HTTP/2
	// handshake.
	http2Settings = []byte{0, 0, 0, 4, 0, 0, 0, 0, 0}
	dripHead      = []byte("POST /v1/sign HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
)

// flood opens floodConns attack connections and waits until the server
// has closed each of them, or floodClosed has passed.
func flood(addr string) floodResults {
	var mu sync.Mutex
	var r floodResults
	var wg sync.WaitGroup
	dialing := make(chan struct{}, 200) // connects in flight, below the listen backlog
	for i := range floodConns {
		dialing <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			opened := time.Now()
			c, err := net.DialTimeout("tcp", addr, 10*time.Second)
			<-dialing
			if err != nil {
				mu.Lock()
				defer mu.Unlock()
				// The server's reset of a refused connection can
				// arrive before connect returns.
				if errors.Is(err, syscall.ECONNRESET) {
					r.refused++
				} else {
					r.dialErr++
					r.lastErr = err
				}
				return
			}
			defer c.Close()
			kind := i % len(attackKinds)
			closed := attack(c, kind)
			mu.Lock()
			defer mu.Unlock()
			if !closed {
				r.open++
				return
			}
			r.closed++
			r.slowest[kind] = max(r.slowest[kind], time.Since(opened))
		}()
	}
	wg.Wait()
	return r
}

// attack plays one kind of bad client on c and reports whether the
// server closed the connection within floodClosed.
func attack(c net.Conn, kind int) bool {
	stop := make(chan struct{})
	defer close(stop)
	switch kind {
	case 1:
		c.Write(http2Preface)
	case 2:
		c.Write(append(append([]byte{}, http2Preface...), http2Settings...))
	case 3:
		c.Write(dripHead)
		go func() {
			t := time.NewTicker(500 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
				}
				if _, err := c.Write([]byte(" ")); err != nil {
					return
				}
			}
		}()
	}
	// Whatever the server says (its HTTP/2 settings, an error status),
	// read on until it closes the connection.
	c.SetReadDeadline(time.Now().Add(floodClosed))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	return !(errors.As(err, &ne) && ne.Timeout())
}

// syncBuffer collects the server's log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestServeRefusesUnboundedConnections: a connection limit or timeout
// that would switch itself off is a usage error, before anything starts.
func TestServeRefusesUnboundedConnections(t *testing.T) {
	for _, tc := range []struct{ flag, value string }{
		{"--max-conns", "0"}, {"--max-conns", "-5"},
		{"--read-timeout", "0s"}, {"--write-timeout", "0s"}, {"--idle-timeout", "-1s"},
	} {
		var out, errb bytes.Buffer
		code := cli.Run(context.Background(), []string{"tempel", "serve", "--data-dir", t.TempDir(), tc.flag, tc.value}, &out, &errb)
		if code != cli.ExitError || !strings.Contains(errb.String(), tc.flag+" ") {
			t.Errorf("serve %s %s: exit %d, stderr %q; want a usage error naming the flag", tc.flag, tc.value, code, errb.String())
		}
	}
}

// TestServeRefusesTooFewDescriptors: a descriptor limit that leaves none
// for clients after the reserve stops serve before it creates anything.
func TestServeRefusesTooFewDescriptors(t *testing.T) {
	if testing.Short() || runtime.GOOS != "linux" {
		t.Skip("runs tempel serve under ulimit -n (Linux)")
	}
	bin, err := exec.LookPath("tempel")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir() + "/data"
	out, err := exec.Command("sh", "-c", `ulimit -n 256 && exec "$0" "$@"`, bin, "serve", "--data-dir", dir, "--listen", "127.0.0.1:0").CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != cli.ExitError || !strings.Contains(string(out), "RLIMIT_NOFILE 256") {
		t.Fatalf("serve under ulimit -n 256: %v, %q; want exit %d naming the limit", err, out, cli.ExitError)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("serve created %s before refusing: %v", dir, err)
	}
}
