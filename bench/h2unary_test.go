package bench

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// echoSigner answers Sign with the request's hash repeated to the asked
// size as its "signature", and fails requests whose id is a multiple of 7
// with a message that needs percent-encoding.
type echoSigner struct {
	tempelv1.UnimplementedSignerServer
	size  int
	block chan struct{} // if set, Sign waits for it
}

func (s *echoSigner) Sign(ctx context.Context, req *tempelv1.SignRequest) (*tempelv1.SignResponse, error) {
	md, _ := metadata.FromIncomingContext(ctx)
	if got := md.Get("authorization"); len(got) != 1 || got[0] != "Basic secret" {
		return nil, status.Error(codes.Unauthenticated, "authentication failed")
	}
	if s.block != nil {
		<-s.block
	}
	if req.RequestId%7 == 0 {
		return nil, status.Errorf(codes.ResourceExhausted, "request %d: quota 100%% used", req.RequestId)
	}
	sig := []byte(strings.Repeat(string(req.Hash), s.size/len(req.Hash)+1)[:s.size])
	return &tempelv1.SignResponse{RequestId: req.RequestId, Signature: sig}, nil
}

func startGRPC(t *testing.T, signer tempelv1.SignerServer) (string, *grpc.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer()
	tempelv1.RegisterSignerServer(g, signer)
	healthpb.RegisterHealthServer(g, health.NewServer())
	go g.Serve(ln)
	t.Cleanup(g.Stop)
	return ln.Addr().String(), g
}

// dialTest opens a lean connection for the test, closed at its end.
func dialTest(t *testing.T, addr, method, auth string) *h2conn {
	t.Helper()
	c, err := dialH2(context.Background(), addr, method, auth)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	return c
}

func signMessage(id uint64, hash []byte) []byte {
	msg := protowire.AppendTag(nil, 1, protowire.VarintType)
	msg = protowire.AppendVarint(msg, id)
	msg = protowire.AppendTag(msg, 2, protowire.BytesType)
	return protowire.AppendBytes(msg, hash)
}

type answer struct {
	msg []byte
	err error
}

// callAll makes n calls at once on c and returns their answers by id.
func callAll(t *testing.T, c *h2conn, n int) []answer {
	t.Helper()
	out := make([]answer, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		c.call(signMessage(uint64(i), hashFor(1, uint64(i))), func(msg []byte, err error) {
			out[i] = answer{bytes.Clone(msg), err} // msg is reused after done
			wg.Done()
		})
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%d of %d calls unanswered after 20s", c.pendingCalls(), n)
	}
	return out
}

func TestH2ConnUnaryCalls(t *testing.T) {
	// A small connection window: 300 answers of 64 KiB only get through
	// if the client gives the window back as it reads.
	addr, _ := startGRPC(t, &echoSigner{size: 64 << 10})
	c, err := dialH2Over(context.Background(), addr, h2Dial{ConnWindow: 1 << 20}, "/tempel.v1.Signer/Sign", "Basic secret")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.close)
	for i, a := range callAll(t, c, 300) {
		if i%7 == 0 {
			want := fmt.Sprintf("grpc status %d: request %d: quota 100%% used", codes.ResourceExhausted, i)
			if a.err == nil || a.err.Error() != want || !isRefusal(a.err) {
				t.Fatalf("call %d: error %v, want the refusal %q", i, a.err, want)
			}
			continue
		}
		if a.err != nil {
			t.Fatalf("call %d: %v", i, a.err)
		}
		var resp tempelv1.SignResponse
		if err := proto.Unmarshal(a.msg, &resp); err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if resp.RequestId != uint64(i) || len(resp.Signature) != 64<<10 || string(resp.Signature[:33]) != string(hashFor(1, uint64(i))) {
			t.Fatalf("call %d: answer for request %d with %d bytes", i, resp.RequestId, len(resp.Signature))
		}
	}
	if n := c.pendingCalls(); n != 0 {
		t.Fatalf("%d calls still pending", n)
	}
}

func TestH2ConnWrongCredentials(t *testing.T) {
	addr, _ := startGRPC(t, &echoSigner{size: 10})
	c := dialTest(t, addr, "/tempel.v1.Signer/Sign", "Basic wrong")
	a := callAll(t, c, 1)[0]
	if a.err == nil || !strings.Contains(a.err.Error(), fmt.Sprintf("grpc status %d: authentication failed", codes.Unauthenticated)) {
		t.Fatalf("error %v, want Unauthenticated", a.err)
	}
	if isRefusal(a.err) {
		t.Fatalf("%v counts as a refusal for load", a.err)
	}
}

func TestH2ConnHealthCheck(t *testing.T) {
	addr, _ := startGRPC(t, &echoSigner{size: 10})
	c := dialTest(t, addr, "/grpc.health.v1.Health/Check", "")
	a := callAll(t, c, 1)[0]
	var resp healthpb.HealthCheckResponse
	if a.err != nil {
		t.Fatal(a.err)
	}
	if err := proto.Unmarshal(a.msg, &resp); err != nil || resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health answer %v, %v", resp.Status, err)
	}
}

// A server that goes away fails the calls it has not answered instead of
// leaving them pending, and later calls fail at once.
func TestH2ConnServerStops(t *testing.T) {
	signer := &echoSigner{size: 10, block: make(chan struct{})}
	addr, g := startGRPC(t, signer)
	c := dialTest(t, addr, "/tempel.v1.Signer/Sign", "Basic secret")
	errs := make(chan error, 5)
	for i := range 5 {
		c.call(signMessage(uint64(i+1), hashFor(2, uint64(i))), func(_ []byte, err error) { errs <- err })
	}
	deadline := time.Now().Add(10 * time.Second)
	for c.pendingCalls() < 5 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	g.Stop() // closes the connection with the calls in flight
	close(signer.block)
	for range 5 {
		select {
		case err := <-errs:
			if err == nil {
				t.Fatal("a call in flight succeeded on a stopped server")
			}
		case <-time.After(10 * time.Second):
			t.Fatal("a call in flight on a stopped server was never answered")
		}
	}
	if a := callAll(t, c, 1)[0]; a.err == nil {
		t.Fatal("a call on a closed connection succeeded")
	}
}

// A server that stops answering (here: one that never reads) does not
// hang a run: the calls waiting for its flow-control window and those in
// flight fail drainTimeout after the run ends.
func TestLeanRunEndsWhenServerStalls(t *testing.T) {
	defer func(d time.Duration) { drainTimeout = d }(drainTimeout)
	drainTimeout = time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	for _, cfg := range []Config{
		{Mode: ModeUnary, Rate: 50000, Duration: 300 * time.Millisecond},
		{Mode: ModeUnary, Concurrency: 4000, Duration: 300 * time.Millisecond},
	} {
		cfg.Server = ln.Addr().String()
		done := make(chan error, 1)
		go func() {
			_, err := Run(context.Background(), cfg)
			done <- err
		}()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), "no answer within 1s after the run") {
				t.Fatalf("rate %v, concurrency %d: error %v, want every call failed for no answer", cfg.Rate, cfg.Concurrency, err)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("rate %v, concurrency %d: run against a stalled server did not end", cfg.Rate, cfg.Concurrency)
		}
	}
}
