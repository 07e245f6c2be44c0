package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// SignBatchStream in the shared-round form, against a real all-in-one
// node: every request first gets its leg, then its round's shared part
// arrives once; the assembled signatures verify against the calendar's
// key, and requests sent without the flag on the same stream get complete
// signatures.
func TestSignBatchStreamSharedRounds(t *testing.T) {
	cal := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := tempelv1.NewSignerClient(dial(t, cal.addr)).SignBatchStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	hash := func(i uint64) ksi.Imprint { return docHash(fmt.Sprint("shared-", i)) }
	send := func(from, to uint64, shared bool) {
		var b tempelv1.SignBatch
		for i := from; i < to; i++ {
			b.Requests = append(b.Requests, &tempelv1.SignRequest{RequestId: i, Hash: hash(i), Level: uint32(i % 3)})
		}
		b.SharedRounds = shared
		if err := st.Send(&b); err != nil {
			t.Fatal(err)
		}
	}
	send(0, n, true)
	send(n, n+10, false)
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}

	var legs round.Joiner
	nLegs, nFull := 0, 0
	rounds := map[uint64]*tempelv1.SharedRound{}
	sigs := map[uint64][]byte{}
	for {
		b, err := st.Recv()
		if err != nil {
			break // io.EOF once every request is answered
		}
		for _, r := range b.Responses {
			switch {
			case r.Status != 0:
				t.Fatalf("request %d: status %#x %s", r.RequestId, r.Status, r.ErrorMessage)
			case r.Round != 0:
				if r.RequestId >= n || len(r.Signature) != 0 || len(r.Leg) == 0 {
					t.Fatalf("request %d: a leg where a full signature was asked, or an empty leg", r.RequestId)
				}
				if _, ok := rounds[r.Round]; ok {
					t.Fatalf("request %d: leg after its round's shared part", r.RequestId)
				}
				legs.Add(r.Round, round.Leg{ID: r.RequestId, Hash: hash(r.RequestId), Shape: r.Shape, Links: r.Leg})
				nLegs++
			default:
				sigs[r.RequestId] = r.Signature
				nFull++
			}
		}
		for _, p := range b.Rounds {
			if _, ok := rounds[p.Id]; ok {
				t.Fatalf("round %d sent twice", p.Id)
			}
			if p.Status != 0 {
				t.Fatalf("round %d failed: %#x %s", p.Id, p.Status, p.ErrorMessage)
			}
			rounds[p.Id] = p
			ans := &round.Answer{AggregationTime: p.AggregationTime, ChainIndex: p.ChainIndex, Elements: p.Elements}
			legs.Join(p.Id, ksi.HashAlg(p.Algorithm), ans, func(l *round.Leg, sig []byte, err error) {
				if err != nil {
					t.Fatalf("request %d: %v", l.ID, err)
				}
				sigs[l.ID] = sig
			})
		}
	}
	if nLegs != n || nFull != 10 {
		t.Fatalf("got %d legs and %d full signatures, want %d and 10", nLegs, nFull, n)
	}
	if legs.Len() != 0 || len(sigs) != n+10 {
		t.Fatalf("%d legs whose round was never sent, %d signatures in all", legs.Len(), len(sigs))
	}
	pf := trustedPubFile(t, cal)
	for id, raw := range sigs {
		sig, err := ksi.ParseSignature(raw)
		if err != nil {
			t.Fatalf("request %d: %v", id, err)
		}
		rep := verifier.Verify(context.Background(), sig, verifier.KeyBased, verifier.Options{Document: hash(id), InputLevel: id % 3, PublicationsFile: pf})
		if rep.Result != verifier.OK {
			t.Fatalf("request %d: %s %s: %s", id, rep.Result, rep.Code, rep.Message)
		}
	}
}

// The sender sends a round's shared part once, after every leg of the
// round, even when the round is done while thousands of its legs are still
// queued (upstream answers at once, the client reads slowly).
func TestStreamSenderRoundAfterAllLegs(t *testing.T) {
	svc, eng := serviceWithFailingUpstream(t, nil)
	const n = 6000
	reqs := make([]*tempelv1.SignRequest, n)
	for i := range reqs {
		reqs[i] = &tempelv1.SignRequest{RequestId: uint64(i), Hash: docHash(fmt.Sprint(i))}
	}
	var mu sync.Mutex
	legsOf := map[uint64]int{} // round → legs seen
	roundSent := map[uint64]int{}
	errs := 0
	var status uint32 // the rounds' failure
	sentReqs := make(chan struct{})
	recvCalls := 0
	recv := func() ([]*tempelv1.SignRequest, bool, error) {
		recvCalls++
		if recvCalls == 1 {
			return reqs, true, nil
		}
		close(sentReqs)
		return nil, false, io.EOF
	}
	send := func(batch []*tempelv1.SignResponse, rounds []*tempelv1.SharedRound) error {
		time.Sleep(time.Millisecond) // a slow client
		mu.Lock()
		defer mu.Unlock()
		for _, r := range batch {
			if r.Round == 0 {
				t.Errorf("request %d: no leg (status %#x)", r.RequestId, r.Status)
				continue
			}
			if roundSent[r.Round] > 0 {
				t.Errorf("request %d: leg after its round %d", r.RequestId, r.Round)
			}
			legsOf[r.Round]++
		}
		for _, p := range rounds {
			roundSent[p.Id]++
			if p.Status == 0 {
				t.Errorf("round %d: want a failure status", p.Id)
			}
			status = p.Status
			errs += legsOf[p.Id]
		}
		return nil
	}
	done := make(chan error, 1)
	go func() { done <- svc.serveStream(context.Background(), recv, send) }()
	<-sentReqs
	eng.CloseRound(context.Background())
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for id, k := range roundSent {
		if k != 1 {
			t.Errorf("round %d sent %d times", id, k)
		}
	}
	if errs != n {
		t.Fatalf("%d of %d requests learned their round's failure", errs, n)
	}
	// The metrics count each request once, with how its round ended.
	counted := func(st uint32) float64 {
		return testutil.ToFloat64(svc.n.metrics.requests.WithLabelValues("grpc-stream", "Sign", ksiStatus(st)))
	}
	if ok, failed := counted(0), counted(status); ok != 0 || failed != n {
		t.Fatalf("metrics: %v requests OK and %v with status %#x, want 0 and %d", ok, failed, status, n)
	}
	if u := eng.Budget().Used(); u != 0 {
		t.Fatalf("budget: %d still in use after every request was answered", u)
	}
}

// A client that stops reading its stream must not stall everyone else:
// its answers queue up on its own stream (engine callbacks never wait for
// a client), and the other clients' rounds keep being answered.
func TestStreamClientThatStopsReading(t *testing.T) {
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	signer := tempelv1.NewSignerClient(dial(t, n.addr))
	stuck, err := signer.SignBatchStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// Complete signatures, far more than the queue and the HTTP/2
	// windows hold; this stream is never read.
	for k := range 4 {
		var b tempelv1.SignBatch
		for i := range 4096 {
			id := uint64(k*4096 + i)
			b.Requests = append(b.Requests, &tempelv1.SignRequest{RequestId: id, Hash: docHash(fmt.Sprint("stuck ", id))})
		}
		if err := stuck.Send(&b); err != nil {
			t.Fatal(err)
		}
	}
	// Meanwhile another client signs, round after round.
	for r := range 3 {
		resp, err := signer.Sign(ctx, &tempelv1.SignRequest{Hash: docHash(fmt.Sprint("reader ", r))})
		if err != nil {
			t.Fatalf("round %d: %v", r, err)
		}
		if len(resp.Signature) == 0 {
			t.Fatalf("round %d: no signature", r)
		}
	}
}

// A client that sends and never reads is not read either once its
// answers waiting to be sent hold its share of the budget: the server's
// memory for one stream stays bounded, and the stream ends cleanly when
// the client goes.
func TestStreamStopsReadingAClientThatDoesNotRead(t *testing.T) {
	// A share of 100 requests, in a budget with room for the stream's
	// buffers while it is not read.
	const share = 100
	svc, eng := serviceWithFailingUpstream(t, aggregator.NewBudget(100*aggregator.CostStreamed*share))
	svc.n.cfg.StreamShare = share
	var recvCalls atomic.Int64
	recv := func() ([]*tempelv1.SignRequest, bool, error) {
		k := recvCalls.Add(1)
		reqs := make([]*tempelv1.SignRequest, 10)
		for i := range reqs {
			reqs[i] = &tempelv1.SignRequest{RequestId: uint64(k*10) + uint64(i), Hash: docHash(fmt.Sprint(k, i))}
		}
		return reqs, false, nil
	}
	unblock := make(chan struct{})
	send := func([]*tempelv1.SignResponse, []*tempelv1.SharedRound) error {
		<-unblock // the client does not read
		return errors.New("client gone")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.serveStream(ctx, recv, send) }()
	// Answer what was accepted, round after round, until reading stops.
	for deadline := time.Now().Add(10 * time.Second); ; {
		eng.CloseRound(context.Background())
		before := recvCalls.Load()
		time.Sleep(50 * time.Millisecond)
		if recvCalls.Load() == before && before >= 10 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("still reading after %d batches with a limit of 100 requests", recvCalls.Load())
		}
	}
	if n := recvCalls.Load(); n > 11 {
		t.Fatalf("read %d batches of 10 with a limit of 100 unsent answers", n)
	}
	cancel()
	close(unblock)
	for {
		eng.CloseRound(context.Background()) // what is still queued
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("stream ended without an error, want the cancellation or the send failure")
			}
			// What the client never got is returned to the budget.
			if u := eng.Budget().Used(); u != 0 {
				t.Fatalf("budget: %d still in use after the client went away", u)
			}
			return
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// serviceWithFailingUpstream is a signing service over an engine whose
// rounds close only when the test calls CloseRound and whose upstream
// fails at once: every round is done as soon as it is built.
func serviceWithFailingUpstream(t *testing.T, budget *aggregator.Budget) (*signerService, *aggregator.Engine) {
	t.Helper()
	eng, err := aggregator.New(aggregator.Config{Logger: quiet(), Period: time.Hour, Budget: budget,
		Upstream: aggregator.UpstreamFunc(func(context.Context, ksi.Imprint, byte) ([]byte, error) {
			return nil, errors.New("calendar down")
		})})
	if err != nil {
		t.Fatal(err)
	}
	return &signerService{n: &Node{agg: eng, metrics: newRequestMetrics(prometheus.NewRegistry())}}, eng
}
