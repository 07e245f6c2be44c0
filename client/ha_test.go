package client_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/node/nodetest"
	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// The high-availability tests run real nodes on loopback next to
// endpoints that misbehave for real: a listener that accepts connections
// and never answers, a port nobody listens on, a node stopped mid-test,
// and a gRPC server that answers at once with another document's genuine
// signature.

// hungEndpoint accepts TCP connections and reads them forever without
// writing a byte: a gRPC client waits on it until its deadline. It returns
// the address and the number of connections accepted so far.
func hungEndpoint(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var accepted atomic.Int64
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			mu.Lock()
			conns = append(conns, conn)
			mu.Unlock()
			go io.Copy(io.Discard, conn)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String(), &accepted
}

// stoppableServer starts a development node; stop may be called mid-test
// and is called again (harmlessly) at cleanup.
func stoppableServer(t *testing.T, users string) (addr string, stop func()) {
	t.Helper()
	addr, stopNode, err := serve(t.TempDir(), users)
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := stopNode(); err != nil {
				t.Errorf("node: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return addr, stop
}

// metric reads one series of a node's /metrics, 0 when it is absent.
// login and key are the credentials /metrics needs ("" in development
// mode).
func metric(t *testing.T, addr, login, key, series string) float64 {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		t.Fatal(err)
	}
	if login != "" {
		req.SetBasicAuth(login, key)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("metrics: %s", resp.Status)
	}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatalf("metrics: %s: %v", sc.Text(), err)
			}
			return f
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return 0
}

// aggregatorNode starts an aggregator whose parent is upstream; stop may
// be called mid-test and is called again (harmlessly) at cleanup.
func aggregatorNode(t *testing.T, upstream string) (addr string, stop func()) {
	t.Helper()
	cfg := node.Config{Role: node.RoleAggregator, Upstream: upstream, Name: "aggregator",
		RoundPeriod: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	return nodetest.Start(t, cfg)
}

// A hung endpoint listed first costs nothing while another answers, also
// after one of the others has been stopped. The deployment is the one
// several endpoints are meant for: two aggregators in front of one
// calendar for signing, and the calendar for extending.
func TestHAHungEndpointFirst(t *testing.T) {
	t.Parallel()
	hung, accepted := hungEndpoint(t)
	cal := startServer(t, "")
	a, stopA := aggregatorNode(t, cal)
	b, _ := aggregatorNode(t, cal)
	// The hung endpoint would hold a call for Timeout per attempt; every
	// call below must end well before one Timeout.
	const timeout = 30 * time.Second
	c := newClient(t, client.Config{Endpoints: []string{hung, a, b}, Timeout: timeout})
	ctx := context.Background()

	sign := func(name string) *ksi.Signature {
		t.Helper()
		doc := docHash(name)
		start := time.Now()
		sig, err := c.Sign(ctx, doc)
		took := time.Since(start)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if took >= timeout {
			t.Fatalf("%s took %s, the hung endpoint's timeout is %s", name, took, timeout)
		}
		verifyInternal(t, sig, doc)
		t.Logf("%s: %s", name, took)
		return sig
	}
	sign("all up")
	// The hung endpoint was asked too: it holds a connection.
	waitFor(t, 10*time.Second, "a connection to the hung endpoint", func() bool { return accepted.Load() > 0 })

	stopA()
	sig := sign("one stopped")

	ext := newClient(t, client.Config{Endpoints: []string{hung, cal}, Timeout: timeout})
	start := time.Now()
	if _, err := ext.CalendarHead(ctx); err != nil {
		t.Fatalf("calendar head: %v", err)
	}
	if _, err := ext.ExtendTo(ctx, sig, 0); err != nil {
		t.Fatalf("extend: %v", err)
	}
	if took := time.Since(start); took >= timeout {
		t.Fatalf("calendar head and extend took %s, timeout %s", took, timeout)
	}
}

// When every endpoint fails, the error names each one's failure, and the
// safe-to-retry failures were retried.
func TestHAAllEndpointsFail(t *testing.T) {
	t.Parallel()
	hung, _ := hungEndpoint(t)
	stopped, stop := stoppableServer(t, "")
	stop()
	refused := closedPort(t)
	const timeout = 300 * time.Millisecond
	c := newClient(t, client.Config{Endpoints: []string{hung, refused, stopped}, Timeout: timeout, Retries: 1, RetryBackoff: 10 * time.Millisecond})

	start := time.Now()
	_, err := c.Sign(context.Background(), docHash("TestHAAllEndpointsFail"))
	took := time.Since(start)
	t.Log(err)
	var all *client.EndpointsError
	if !errors.As(err, &all) {
		t.Fatalf("every endpoint down: %v, want an EndpointsError", err)
	}
	if !errors.Is(err, client.ErrUnavailable) {
		t.Errorf("every endpoint down: %v, want ErrUnavailable", err)
	}
	if len(all.Failures) != 3 {
		t.Fatalf("%d failures, want one per endpoint: %v", len(all.Failures), err)
	}
	for i, ep := range []string{hung, refused, stopped} {
		f := all.Failures[i]
		if f.Endpoint != ep || !strings.Contains(err.Error(), "["+ep+"]") {
			t.Errorf("failure %d names %s, want %s in %q", i, f.Endpoint, ep, err)
		}
		if f.Attempts != 2 {
			t.Errorf("%s: %d attempts, want 2 (one retry)", ep, f.Attempts)
		}
		if !errors.Is(f.Err, client.ErrUnavailable) {
			t.Errorf("%s: %v, want ErrUnavailable", ep, f.Err)
		}
	}
	if !errors.Is(all.Failures[0].Err, context.DeadlineExceeded) {
		t.Errorf("hung endpoint: %v, want its deadline", all.Failures[0].Err)
	}
	// The hung endpoint was given its full timeout at each attempt.
	if took < 2*timeout {
		t.Errorf("gave up after %s, two attempts of %s each at the hung endpoint", took, timeout)
	}
}

// A refusal of the credentials or of the request is final: the server
// sees it once, though the client may retry.
func TestHARefusalsNotRetried(t *testing.T) {
	t.Parallel()
	t.Run("unauthenticated", func(t *testing.T) {
		t.Parallel()
		addr := startServer(t, testUsers)
		c := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: "wrong key", Retries: 3})
		if _, err := c.Sign(context.Background(), docHash("x")); !errors.Is(err, client.ErrUnauthenticated) {
			t.Fatalf("wrong key: %v, want ErrUnauthenticated", err)
		}
		series := `tempel_requests_total{interface="grpc",method="Sign",status="Unauthenticated"}`
		if n := metric(t, addr, testLogin, testKey, series); n != 1 {
			t.Fatalf("server refused %v calls, want 1 (no retry)", n)
		}
	})
	t.Run("invalid argument", func(t *testing.T) {
		t.Parallel()
		addr := startServer(t, "")
		c := newClient(t, client.Config{Endpoints: []string{addr}, Retries: 3})
		// No aggregator accepts a request at level 255 (the client
		// leaves the check to the server).
		if _, err := c.SignLevel(context.Background(), docHash("x"), 255); !errors.Is(err, client.ErrInvalid) {
			t.Fatalf("level 255: %v, want ErrInvalid", err)
		}
		series := `tempel_requests_total{interface="grpc",method="Sign",status="InvalidArgument"}`
		if n := metric(t, addr, "", "", series); n != 1 {
			t.Fatalf("server refused %v calls, want 1 (no retry)", n)
		}
	})
}

// liar answers every Sign at once with a genuine signature of another
// document, and counts the calls.
type liar struct {
	tempelv1.UnimplementedSignerServer
	sig   []byte
	calls atomic.Int64
}

func (l *liar) Sign(context.Context, *tempelv1.SignRequest) (*tempelv1.SignResponse, error) {
	l.calls.Add(1)
	return &tempelv1.SignResponse{Signature: l.sig}, nil
}

// A fast wrong answer never wins over a right one, and alone it is a bad
// response, not retried.
func TestHABadAnswerLoses(t *testing.T) {
	t.Parallel()
	good := startServer(t, "")
	ctx := context.Background()
	other, err := newClient(t, client.Config{Endpoints: []string{good}}).Sign(ctx, docHash("someone else's document"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := other.Encode()
	if err != nil {
		t.Fatal(err)
	}
	l := &liar{sig: b}
	srv := grpc.NewServer()
	tempelv1.RegisterSignerServer(srv, l)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve(ln)
	t.Cleanup(srv.Stop)

	c := newClient(t, client.Config{Endpoints: []string{ln.Addr().String(), good}})
	doc := docHash("TestHABadAnswerLoses")
	sig, err := c.Sign(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	verifyInternal(t, sig, doc)
	if l.calls.Load() == 0 {
		t.Fatal("the lying endpoint was never asked")
	}

	alone := newClient(t, client.Config{Endpoints: []string{ln.Addr().String()}, Retries: 3})
	before := l.calls.Load()
	if _, err := alone.Sign(ctx, doc); !errors.Is(err, client.ErrBadResponse) {
		t.Fatalf("only a lying endpoint: %v, want ErrBadResponse", err)
	}
	if n := l.calls.Load() - before; n != 1 {
		t.Fatalf("lying endpoint asked %d times, want 1 (a bad answer is not retried)", n)
	}
	rep := verifier.Verify(ctx, other, verifier.Internal, verifier.Options{Document: doc})
	if rep.Result == verifier.OK {
		t.Fatal("the liar's signature verifies against the document: the test proves nothing")
	}
}

// With Parallel 1 the endpoints are asked one after the other: the second
// only once the first has failed for good.
func TestHAParallelOne(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{closedPort(t), addr}, Parallel: 1, Retries: -1})
	doc := docHash("TestHAParallelOne")
	sig, err := c.Sign(context.Background(), doc)
	if err != nil {
		t.Fatal(err)
	}
	verifyInternal(t, sig, doc)
	if _, err := client.New(client.Config{Endpoints: []string{addr}, Retries: client.MaxRetries + 1}); err == nil {
		t.Fatal("retries above MaxRetries accepted")
	}
}

// Unary calls start at the endpoint that answered last: with one asked
// at a time, a hung endpoint listed first costs its timeout once, not on
// every call (a cluster member cut off by a partition).
func TestHAStartsWhereLastAnswered(t *testing.T) {
	t.Parallel()
	hung, _ := hungEndpoint(t)
	addr := startServer(t, "")
	const timeout = 5 * time.Second
	c := newClient(t, client.Config{Endpoints: []string{hung, addr}, Parallel: 1, Retries: -1, Timeout: timeout})
	for i := range 4 {
		doc := docHash(fmt.Sprintf("TestHAStartsWhereLastAnswered %d", i))
		start := time.Now()
		sig, err := c.Sign(context.Background(), doc)
		if err != nil {
			t.Fatal(err)
		}
		verifyInternal(t, sig, doc)
		took := time.Since(start)
		t.Logf("call %d: %s", i, took)
		switch {
		case i == 0 && took < timeout:
			t.Fatalf("the first call took %s: it did not ask the hung endpoint first", took)
		case i > 0 && took >= timeout:
			t.Fatalf("call %d took %s: it waited for the hung endpoint again", i, took)
		}
	}
}

// waitFor polls cond until it holds or d has passed.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s", d, what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A calendar chain from another calendar never wins an extension: the
// chain is checked against the signature at each endpoint, so the
// signature's own calendar answers even when the other one is asked too.
func TestHAExtendChainOfAnotherCalendarLoses(t *testing.T) {
	t.Parallel()
	other := startServer(t, "")
	own := startServer(t, "")
	ctx := context.Background()
	doc := docHash("TestHAExtendChainOfAnotherCalendarLoses")
	sig, err := newClient(t, client.Config{Endpoints: []string{own}}).Sign(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	otherClient := newClient(t, client.Config{Endpoints: []string{other}})
	waitFor(t, 20*time.Second, "the other calendar to hold the signature's second", func() bool {
		h, err := otherClient.CalendarHead(ctx)
		return err == nil && h.First <= sig.SigningTime() && h.Last >= sig.SigningTime()
	})
	// The other calendar alone answers with a chain of its own tree.
	_, err = otherClient.ExtendTo(ctx, sig, 0)
	var mismatch *client.ChainMismatchError
	if !errors.As(err, &mismatch) {
		t.Fatalf("extend at another calendar: %v, want a ChainMismatchError", err)
	}
	// Both asked: each answer is checked, so only the own calendar's can win.
	both := newClient(t, client.Config{Endpoints: []string{other, own}})
	for i := range 5 {
		if _, err := both.ExtendTo(ctx, sig, 0); err != nil {
			t.Fatalf("extend %d with both calendars: %v", i, err)
		}
	}
}
