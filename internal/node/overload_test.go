package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// serveManual serves n's gRPC and HTTP interfaces on a loopback port;
// its rounds close only when the test calls CloseRound (or runs the
// engine).
func serveManual(t *testing.T, n *Node, ctx context.Context) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h, err := n.httpHandler(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		server.Serve(sctx, ln, n.grpcServer(), h, server.Options{ShutdownGrace: time.Second, Logger: quiet()})
	}()
	t.Cleanup(func() { stop(); <-done })
	return ln.Addr().String()
}

// readyz returns /readyz's status and body.
func readyz(t *testing.T, addr string) (int, string) {
	t.Helper()
	r, err := http.Get("http://" + addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return r.StatusCode, string(b)
}

// With the budget full, every interface refuses at once, with its own
// overload status, while the requests already admitted are signed; the
// node reports the overload while it lasts, and signs normally after.
func TestOverloadRefusedAtOnceOnEveryInterface(t *testing.T) {
	const parked = 300
	// A budget of exactly two streams and 300 parked callers.
	n, ctx := manualNode(t, Config{MaxMemory: RequestBudgetShare * (2*streamCost + parked*aggregator.CostCaller)})
	addr := serveManual(t, n, ctx)
	signer := tempelv1.NewSignerClient(dial(t, addr))
	sctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	st, err := signer.SignStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	bst, err := signer.SignBatchStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	// The streams start on the server as their first messages arrive.
	for i, s := range []interface{ SendMsg(any) error }{st, bst} {
		var m any = &tempelv1.SignRequest{RequestId: 100, Hash: docHash("open")}
		if i == 1 {
			m = &tempelv1.SignBatch{Requests: []*tempelv1.SignRequest{{RequestId: 100, Hash: docHash("open")}}}
		}
		if err := s.SendMsg(m); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, 10*time.Second, "the streams to start", func() bool { return n.agg.QueueLen() == 2 })
	n.agg.CloseRound(ctx)
	if r, err := st.Recv(); err != nil || r.Status != 0 {
		t.Fatalf("stream: %v %v", r, err)
	}
	if r, err := bst.Recv(); err != nil || len(r.Responses) != 1 || r.Responses[0].Status != 0 {
		t.Fatalf("batch stream: %v %v", r, err)
	}
	waitFor(t, 10*time.Second, "the first answers to be sent", func() bool { return n.agg.Budget().Used() == 2*streamCost })

	// Fill the budget with unary calls; no round closes yet.
	type answer struct {
		hash ksi.Imprint
		resp *tempelv1.SignResponse
		err  error
	}
	answers := make(chan answer, parked)
	for i := range parked {
		go func() {
			h := docHash(fmt.Sprint("admitted ", i))
			resp, err := signer.Sign(ctx, &tempelv1.SignRequest{Hash: h})
			answers <- answer{h, resp, err}
		}()
	}
	waitFor(t, 10*time.Second, "the budget to fill", func() bool { return n.agg.QueueLen() == parked })
	waitFor(t, 10*time.Second, "the budget to fill", func() bool { return n.agg.Budget().Used() == n.agg.Budget().Limit() })
	if used, limit := n.agg.Budget().Used(), n.agg.Budget().Limit(); used != limit {
		t.Fatalf("budget: %d of %d in use with %d parked calls", used, limit, parked)
	}

	quick := func(what string, start time.Time) {
		t.Helper()
		if d := time.Since(start); d > 2*time.Second {
			t.Errorf("%s: refused after %s, want at once", what, d)
		}
	}
	// Unary gRPC: RESOURCE_EXHAUSTED.
	start := time.Now()
	_, err = signer.Sign(ctx, &tempelv1.SignRequest{Hash: docHash("refused")})
	if status.Code(err) != codes.ResourceExhausted {
		t.Errorf("unary Sign over the budget: %v, want RESOURCE_EXHAUSTED", err)
	}
	quick("unary", start)

	// REST: HTTP 429.
	start = time.Now()
	r, err := http.Post("http://"+addr+"/v1/sign", "application/json", strings.NewReader(`{"hash":"SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"}`))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(r.Body)
	r.Body.Close()
	if r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("REST sign over the budget: %s %s, want 429", r.Status, body)
	}
	quick("REST", start)

	// KSI PDU: every request of the PDU answered with 0x106.
	preq := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: docHash("pdu 1")}, {RequestID: 2, Hash: docHash("pdu 2")}}}
	raw, err := preq.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	start = time.Now()
	r, err = http.Post("http://"+addr+"/gt-signingservice", "application/ksi-request", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(r.Body)
	r.Body.Close()
	presp, err := pdu.ParseAggregatorResponse(body)
	if err != nil {
		t.Fatalf("PDU over the budget (%s): %v", r.Status, err)
	}
	if len(presp.Responses) != 2 {
		t.Fatalf("PDU over the budget: %d responses, want 2", len(presp.Responses))
	}
	for _, pr := range presp.Responses {
		if pr.Status != pdu.StatusAggrTooManyRequests {
			t.Errorf("PDU request %d over the budget: status %#x, want 0x106", pr.RequestID, pr.Status)
		}
	}
	quick("PDU", start)

	// Streams, one request per message and batched: answers with 0x106.
	start = time.Now()
	if err := st.Send(&tempelv1.SignRequest{RequestId: 7, Hash: docHash("stream")}); err != nil {
		t.Fatal(err)
	}
	sr, err := st.Recv()
	if err != nil || sr.RequestId != 7 || uint64(sr.Status) != pdu.StatusAggrTooManyRequests {
		t.Errorf("stream over the budget: %v %v, want request 7 with status 0x106", sr, err)
	}
	quick("stream", start)
	start = time.Now()
	if err := bst.Send(&tempelv1.SignBatch{SharedRounds: true, Requests: []*tempelv1.SignRequest{{RequestId: 8, Hash: docHash("batch 8")}, {RequestId: 9, Hash: docHash("batch 9")}}}); err != nil {
		t.Fatal(err)
	}
	for got := 0; got < 2; {
		b, err := bst.Recv()
		if err != nil {
			t.Fatalf("batch stream over the budget: %v", err)
		}
		for _, sr := range b.Responses {
			if uint64(sr.Status) != pdu.StatusAggrTooManyRequests {
				t.Errorf("batch request %d over the budget: status %#x, want 0x106", sr.RequestId, sr.Status)
			}
			got++
		}
	}
	quick("batch stream", start)

	// A new stream is refused: no room for what its transport buffers.
	more, err := signer.SignBatchStream(sctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := more.Recv(); status.Code(err) != codes.ResourceExhausted {
		t.Errorf("a stream opened over the budget: %v, want RESOURCE_EXHAUSTED", err)
	}

	// Overloaded, on both probes.
	if code, body := readyz(t, addr); code != http.StatusServiceUnavailable || !strings.Contains(body, "not ready: overloaded") {
		t.Errorf("readyz while overloaded: %d %q", code, body)
	}
	if h, err := healthpb.NewHealthClient(dial(t, addr)).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil || h.Status != healthpb.HealthCheckResponse_NOT_SERVING {
		t.Errorf("gRPC health while overloaded: %v %v", h, err)
	}

	// The admitted calls are signed once their round runs.
	n.agg.CloseRound(ctx)
	for range parked {
		a := <-answers
		if a.err != nil {
			t.Fatalf("admitted call: %v", a.err)
		}
		sig, err := ksi.ParseSignature(a.resp.Signature)
		if err != nil {
			t.Fatal(err)
		}
		if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: a.hash}); rep.Result != verifier.OK {
			t.Fatalf("admitted call's signature: %s %s", rep.Code, rep.Message)
		}
	}

	// Ready again soon after, and signing on every interface.
	waitFor(t, 10*time.Second, "readyz to say ready", func() bool { code, _ := readyz(t, addr); return code == http.StatusOK })
	if used := n.agg.Budget().Used(); used != 2*streamCost {
		t.Fatalf("budget: %d in use after every call was answered, want the two streams' %d", used, 2*streamCost)
	}
	go n.agg.Run(ctx)
	if _, err := signer.Sign(ctx, &tempelv1.SignRequest{Hash: docHash("after")}); err != nil {
		t.Fatalf("unary after the overload: %v", err)
	}
	if err := st.Send(&tempelv1.SignRequest{RequestId: 10, Hash: docHash("stream after")}); err != nil {
		t.Fatal(err)
	}
	if sr, err := st.Recv(); err != nil || sr.Status != 0 || len(sr.Signature) == 0 {
		t.Fatalf("stream after the overload: %v %v", sr, err)
	}
	st.CloseSend()
	bst.CloseSend()
}

// A stream whose client never reads holds no more than its share of the
// budget and does not hold back another stream's answers; it is ended
// with RESOURCE_EXHAUSTED once its sends make no progress for the send
// timeout, and everything it held is returned to the budget.
func TestStreamThatNeverReadsIsEnded(t *testing.T) {
	cfg := Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, StreamSendTimeout: 2 * time.Second,
		MaxMemory: RequestBudgetShare * 64 << 20}
	n := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	signer := tempelv1.NewSignerClient(dial(t, n.addr))
	stuck, err := signer.SignBatchStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Complete signatures, far more than the HTTP/2 windows hold, never
	// read; the sends block once the server stops reading.
	sent := make(chan error, 1)
	go func() {
		for k := 0; ; k++ {
			var b tempelv1.SignBatch
			for i := range 4096 {
				id := uint64(k*4096 + i)
				b.Requests = append(b.Requests, &tempelv1.SignRequest{RequestId: id, Hash: docHash(fmt.Sprint("stuck ", id))})
			}
			if err := stuck.Send(&b); err != nil {
				sent <- err
				return
			}
		}
	}()
	budget := n.n.agg.Budget()
	share := budget.Limit() / n.n.streamShare()
	waitFor(t, 20*time.Second, "the stuck stream to hold answers", func() bool { return budget.Used() > share/2 })

	// Meanwhile another stream is answered, round after round.
	reader, err := signer.SignStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for r := range 3 {
		if err := reader.Send(&tempelv1.SignRequest{RequestId: uint64(r), Hash: docHash(fmt.Sprint("reader ", r))}); err != nil {
			t.Fatal(err)
		}
		resp, err := reader.Recv()
		if err != nil || resp.Status != 0 || len(resp.Signature) == 0 {
			t.Fatalf("reading stream, request %d: %v %v", r, resp, err)
		}
	}
	// Its share, one batch read beyond it, and the two streams' buffers.
	if used := budget.Used(); used > share+int64(aggregator.CostStreamed)*4096+2*streamCost {
		t.Errorf("a stream that does not read holds %d bytes, its share is %d", used, share)
	}

	// The stuck stream is ended after the send timeout, and what it held
	// is returned, while its client still reads nothing. (The client
	// learns the status once it reads what was sent before it: HTTP/2
	// delivers the trailers after the stream's data.)
	waitFor(t, 30*time.Second, "the stuck stream's memory to be returned", func() bool { return budget.Used() == streamCost }) // the reader's
	ended := testutil.ToFloat64(n.n.metrics.requests.WithLabelValues("grpc-stream", "Sign", "send-timeout"))
	if ended != 1 {
		t.Errorf("metrics: %v streams ended by the send timeout, want 1", ended)
	}
	var end error
	for end == nil {
		_, end = stuck.Recv()
	}
	if status.Code(end) != codes.ResourceExhausted {
		t.Errorf("stuck stream ended with %v, want RESOURCE_EXHAUSTED", end)
	}
	reader.CloseSend()
	waitFor(t, 20*time.Second, "the budget to be returned", func() bool { return budget.Used() == 0 })
}

// A quiet node returns the memory an overload left behind to the system
// within seconds (the runtime alone took minutes).
func TestQuietNodeReturnsMemory(t *testing.T) {
	if testing.Short() {
		t.Skip("allocates 256 MiB")
	}
	eng, err := aggregator.New(aggregator.Config{Logger: quiet(), Period: time.Hour, Budget: aggregator.NewBudget(64 << 20),
		Upstream: aggregator.UpstreamFunc(func(context.Context, ksi.Imprint, byte) ([]byte, error) { return nil, nil })})
	if err != nil {
		t.Fatal(err)
	}
	n := &Node{agg: eng, log: quiet()}
	// What an overload leaves: a heap grown far beyond what is live.
	junk := make([][]byte, 256)
	for i := range junk {
		junk[i] = make([]byte, 1<<20)
		junk[i][0] = 1
	}
	runtime.KeepAlive(junk)
	junk = nil // garbage that a quiet process may keep for minutes
	held := retained()
	if held < 200<<20 {
		t.Skipf("the runtime returned the memory by itself (holds %d MiB)", held>>20)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go n.returnMemory(ctx)
	waitFor(t, 20*time.Second, "the memory to be returned", func() bool { return retained() < held-150<<20 })
}
