package node

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"runtime"
	"runtime/metrics"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/protobuf/proto"

	"github.com/tempel-ksi/tempel/aggregator"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// inUse is what the process holds after a full collection: live heap and
// goroutine stacks.
func inUse() int64 {
	runtime.GC()
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}, {Name: "/memory/classes/heap/stacks:bytes"}}
	metrics.Read(s)
	return int64(s[0].Value.Uint64() + s[1].Value.Uint64())
}

// settledInUse is inUse once it no longer drops (what an earlier test
// left behind has been collected).
func settledInUse(t *testing.T) int64 {
	t.Helper()
	last := inUse()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		now := inUse()
		if now > last-64<<10 {
			return now
		}
		last = now
	}
	t.Fatal("the heap kept shrinking for 10 s")
	return 0
}

// manualNode is an all-in-one node whose calendar runs and whose rounds
// close only when the test calls CloseRound.
func manualNode(t *testing.T, cfg Config) (*Node, context.Context) {
	t.Helper()
	cfg.Role, cfg.DataDir, cfg.PublishEvery, cfg.Logger = RoleAll, t.TempDir(), time.Hour, quiet()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); n.cal.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; n.Close() })
	waitFor(t, 10*time.Second, "the calendar to be ready", func() bool { return n.cal.Ready() == nil })
	return n, ctx
}

// waitFor polls cond until it holds, failing the test after d.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

// rawSigner sends unary Sign calls on one HTTP/2 connection with bare
// frames and drains what comes back unread: the client side of a parked
// call costs the test process almost nothing, so what the process holds
// is the server's.
type rawSigner struct {
	c    net.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	enc  *hpack.Encoder
	next uint32
}

func dialRawSigner(t *testing.T, addr string) *rawSigner {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	go io.Copy(io.Discard, c)
	r := &rawSigner{c: c, fr: http2.NewFramer(c, nil), next: 1}
	r.enc = hpack.NewEncoder(&r.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := r.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	return r
}

// sign sends one Sign call for a distinct hash.
func (r *rawSigner) sign(i int) error {
	msg, err := proto.Marshal(&tempelv1.SignRequest{Hash: docHash(fmt.Sprint("cost ", i))})
	if err != nil {
		return err
	}
	r.hbuf.Reset()
	for _, f := range [][2]string{{":method", "POST"}, {":scheme", "http"}, {":path", tempelv1.Signer_Sign_FullMethodName},
		{":authority", "localhost"}, {"content-type", "application/grpc"}, {"te", "trailers"}} {
		r.enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	id := r.next
	r.next += 2
	if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hbuf.Bytes(), EndHeaders: true}); err != nil {
		return err
	}
	data := binary.BigEndian.AppendUint32([]byte{0}, uint32(len(msg)))
	return r.fr.WriteData(id, true, append(data, msg...))
}

// TestRequestCosts measures what each kind of waiting request holds in a
// real node, and fails when it exceeds its constant in the budget (the
// constants are what the budget charges, so they must not undercount).
func TestRequestCosts(t *testing.T) {
	if testing.Short() {
		t.Skip("measures thousands of requests")
	}
	if raceEnabled {
		t.Skip("the race detector changes what requests hold")
	}
	t.Run("unary", func(t *testing.T) {
		n, ctx := manualNode(t, Config{})
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		g := n.grpcServer()
		go g.Serve(ln)
		defer g.Stop()
		c := dialRawSigner(t, ln.Addr().String())
		before := settledInUse(t)
		const calls = 20000
		for i := range calls {
			if err := c.sign(i); err != nil {
				t.Fatal(err)
			}
		}
		waitFor(t, 20*time.Second, "the calls to be queued", func() bool { return n.agg.QueueLen() == calls })
		per := (inUse() - before) / calls
		t.Logf("a parked unary call holds %d bytes (CostCaller %d)", per, aggregator.CostCaller)
		if per > aggregator.CostCaller {
			t.Errorf("a parked unary call holds %d bytes, more than CostCaller (%d)", per, aggregator.CostCaller)
		}
		if used := n.agg.Budget().Used(); used != calls*aggregator.CostCaller {
			t.Errorf("budget: %d in use, want %d", used, calls*aggregator.CostCaller)
		}
		n.agg.CloseRound(ctx)
		waitFor(t, 20*time.Second, "every call to be answered", func() bool { return n.agg.Budget().Used() == 0 })
	})
	for _, shared := range []bool{false, true} {
		t.Run(fmt.Sprint("streamed, shared ", shared), func(t *testing.T) {
			n, ctx := manualNode(t, Config{})
			const reqs = 50000
			// Held the way serveStream holds them: the request in its
			// round, then its answer in the stream's queue.
			before := settledInUse(t)
			reqsOf := make([]*tempelv1.SignRequest, reqs)
			for i := range reqsOf {
				reqsOf[i] = &tempelv1.SignRequest{RequestId: uint64(i), Hash: docHash(fmt.Sprint("stream cost ", i))}
			}
			q := newAnswerQueue()
			var answered atomic.Int64
			svc := &signerService{n: n}
			for _, req := range reqsOf {
				r, err := svc.request(ctx, req)
				if err != nil {
					t.Fatal(err)
				}
				id := req.RequestId
				if shared {
					err = n.agg.SubmitShared(r, func(x aggregator.Leg) {
						q.push(streamAnswer{resp: &tempelv1.SignResponse{RequestId: id, Round: roundID(x.Round), Leg: x.Leg, Shape: x.Shape}, round: x.Round, cost: 1})
						answered.Add(1)
					})
				} else {
					err = n.agg.Submit(r, func(x aggregator.Signed) {
						q.push(streamAnswer{resp: &tempelv1.SignResponse{RequestId: id, Signature: x.Signature}, cost: 1})
						answered.Add(1)
					})
				}
				if err != nil {
					t.Fatal(err)
				}
			}
			reqsOf = nil
			queued := (inUse() - before) / reqs
			n.agg.CloseRound(ctx)
			waitFor(t, 20*time.Second, "every answer", func() bool { return answered.Load() == reqs })
			waiting := (inUse() - before) / reqs
			runtime.KeepAlive(q)
			cost := int64(aggregator.CostStreamed)
			if shared {
				cost = aggregator.CostLeg
			}
			t.Logf("a streamed request holds %d bytes queued for its round, %d with its answer waiting to be sent (cost %d)", queued, waiting, cost)
			if max(queued, waiting) > cost {
				t.Errorf("a streamed request holds up to %d bytes, more than its cost %d", max(queued, waiting), cost)
			}
		})
	}
}

func roundID(r *aggregator.SharedRound) uint64 {
	if r == nil {
		return 0
	}
	return r.ID
}
