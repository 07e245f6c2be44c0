package aggregator

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"runtime/metrics"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/verifier"
)

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func imprint(seed uint64) ksi.Imprint {
	s := sha256.Sum256(binary.BigEndian.AppendUint64(nil, seed))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, s[:]...)
}

// fakeCalendar is an upstream that signs a root the way the calendar
// does, with a calendar chain of one right link and a publication record,
// so the resulting signatures verify internally. It is real hashing and
// encoding, only without the store.
type fakeCalendar struct {
	calls atomic.Int64
	fail  error
	delay time.Duration
}

func (f *fakeCalendar) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	f.calls.Add(1)
	if f.delay > 0 {
		select {
		case <-time.After(f.delay):
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	if f.fail != nil {
		return nil, f.fail
	}
	meta, _ := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: "aggregator"})
	r, err := round.Build(ksi.SHA2_256, []round.Request{{Hash: root, Level: level, Meta: meta}})
	if err != nil {
		return nil, err
	}
	top, _ := r.Root()
	const t = 1_800_000_001
	cal, err := ksi.NewCalendarChain(t, t, top, calendarLinks(t))
	if err != nil {
		return nil, err
	}
	var h ksi.Hasher
	out, _ := cal.Output(&h)
	pub, _ := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(t, out), nil, nil)
	ans := &round.Answer{AggregationTime: t, Elements: append(append([]byte{}, cal.Raw...), pub.Raw...)}
	var w round.Writer
	return w.AppendSignature(nil, r, 0, ans)
}

// calendarLinks gives a leaf t of a calendar over 0..t only right links
// (t is the newest leaf), one per binary digit of t+1 but the last.
func calendarLinks(t uint64) []ksi.CalendarLink {
	var links []ksi.CalendarLink
	n := t + 1
	peaks := 0
	for b := n; b != 0; b &= b - 1 {
		peaks++
	}
	low := 0
	for n>>low&1 == 0 {
		low++
	}
	for i := 0; i < low; i++ {
		links = append(links, ksi.CalendarLink{Sibling: imprint(uint64(1000 + i))})
	}
	for i := 0; i < peaks-1; i++ {
		links = append(links, ksi.CalendarLink{Sibling: imprint(uint64(2000 + i))})
	}
	return links
}

func newEngine(t testing.TB, up Upstream, cfg Config) *Engine {
	t.Helper()
	cfg.Upstream = up
	cfg.Logger = discard()
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func TestRoundSignaturesVerify(t *testing.T) {
	e := newEngine(t, &fakeCalendar{}, Config{})
	type got struct {
		i   int
		sig []byte
		err error
	}
	const n = 300
	res := make(chan got, n)
	for i := 0; i < n; i++ {
		r := Request{Hash: imprint(uint64(i)), Level: byte(i % 4), Identity: Identity{ClientID: "alice", MachineID: "m1", Sequence: uint64(i), HasSequence: true}}
		if err := e.Submit(r, func(x Signed) { res <- got{i, x.Signature, x.Err} }); err != nil {
			t.Fatal(err)
		}
	}
	e.CloseRound(context.Background())
	for k := 0; k < n; k++ {
		g := <-res
		if g.err != nil {
			t.Fatal(g.err)
		}
		sig, err := ksi.ParseSignature(g.sig)
		if err != nil {
			t.Fatal(err)
		}
		rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: imprint(uint64(g.i)), InputLevel: uint64(g.i % 4)})
		if rep.Result != verifier.OK {
			t.Fatalf("request %d: %s %s", g.i, rep.Code, rep.Message)
		}
		md := sig.Metadata()
		if len(md) < 1 || md[0].ClientID != "alice" || md[0].MachineID != "m1" || md[0].SequenceNumber != uint64(g.i) || !md[0].HasRequestTime {
			t.Fatalf("request %d: metadata %+v", g.i, md[0])
		}
		if len(sig.Chains()) != 2 || len(sig.Chains()[0].ChainIndex) != 2 {
			t.Fatalf("want 2 chains with a 2-entry index on the lowest, got %d chains", len(sig.Chains()))
		}
	}
	e.wg.Wait()
}

func TestSubmitRejects(t *testing.T) {
	e := newEngine(t, &fakeCalendar{}, Config{MaxLevel: 5, Quota: 2, MaxQueue: 3})
	nop := func(Signed) {}
	for _, tc := range []struct {
		name string
		r    Request
		want error
	}{
		{"sha1", Request{Hash: append(ksi.Imprint{0}, make([]byte, 20)...)}, ErrBadRequest},
		{"short", Request{Hash: ksi.Imprint{1, 2, 3}}, ErrBadRequest},
		{"unknown alg", Request{Hash: append(ksi.Imprint{0x42}, make([]byte, 32)...)}, ErrBadRequest},
		{"level", Request{Hash: imprint(1), Level: 6}, ErrLevelTooHigh},
	} {
		if err := e.Submit(tc.r, nop); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	a := Request{Hash: imprint(1), Identity: Identity{ClientID: "a"}}
	for i := 0; i < 2; i++ {
		if err := e.Submit(a, nop); err != nil {
			t.Fatal(err)
		}
	}
	if err := e.Submit(a, nop); !errors.Is(err, ErrOverQuota) {
		t.Fatalf("third request of a: %v, want over quota", err)
	}
	b := Request{Hash: imprint(2), Identity: Identity{ClientID: "b"}}
	if err := e.Submit(b, nop); err != nil {
		t.Fatal(err)
	}
	if err := e.Submit(b, nop); !errors.Is(err, ErrOverloaded) {
		t.Fatalf("fourth queued request: %v, want overloaded", err)
	}
	e.CloseRound(context.Background())
	e.wg.Wait()
	// A new round resets quotas.
	if err := e.Submit(a, nop); err != nil {
		t.Fatalf("quota not reset after the round: %v", err)
	}
}

func TestUpstreamFailureAndTimeout(t *testing.T) {
	for _, tc := range []struct {
		name   string
		up     *fakeCalendar
		want   error
		status uint64
	}{
		{"down", &fakeCalendar{fail: errors.New("connection refused")}, ErrUpstream, 0x300},
		{"slow", &fakeCalendar{delay: time.Hour}, ErrUpstreamTime, 0x301},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEngine(t, tc.up, Config{UpstreamTimeout: 50 * time.Millisecond})
			errc := make(chan error, 1)
			e.Submit(Request{Hash: imprint(1)}, func(x Signed) { errc <- x.Err })
			e.CloseRound(context.Background())
			select {
			case err := <-errc:
				if !errors.Is(err, tc.want) {
					t.Fatalf("%v, want %v", err, tc.want)
				}
				if got := Status(err); got != tc.status {
					t.Fatalf("KSI status %#x, want %#x", got, tc.status)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("request not answered in bounded time")
			}
		})
	}
}

func TestShutdownAnswersPending(t *testing.T) {
	e := newEngine(t, &fakeCalendar{}, Config{Period: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx); close(done) }()
	var wg sync.WaitGroup
	var ok atomic.Int32
	for i := 0; i < 10; i++ {
		wg.Add(1)
		e.Submit(Request{Hash: imprint(uint64(i))}, func(x Signed) {
			if x.Err == nil && x.Signature != nil {
				ok.Add(1)
			}
			wg.Done()
		})
	}
	cancel()
	<-done
	wg.Wait()
	if ok.Load() != 10 {
		t.Fatalf("%d of 10 pending requests signed at shutdown", ok.Load())
	}
	if err := e.Submit(Request{Hash: imprint(1)}, func(Signed) {}); !errors.Is(err, ErrStopped) {
		t.Fatalf("submit after stop: %v", err)
	}
}

// BenchmarkRound100k: one round of 100,000 queued requests to every
// request's finished signature bytes, the upstream answer given.
func BenchmarkRound100k(b *testing.B) {
	const n = 100_000
	up := &fakeCalendar{}
	e := newEngine(b, up, Config{MaxQueue: n})
	hashes := make([]ksi.Imprint, n)
	for i := range hashes {
		hashes[i] = imprint(uint64(i))
	}
	var wg sync.WaitGroup
	var bytesOut atomic.Int64
	cb := func(x Signed) {
		if x.Err != nil {
			panic(x.Err)
		}
		bytesOut.Add(int64(len(x.Signature)))
		wg.Done()
	}
	b.ReportAllocs()
	var queued time.Duration
	for b.Loop() {
		b.StopTimer()
		t0 := time.Now()
		for i := range hashes {
			if err := e.Submit(Request{Hash: hashes[i], Identity: Identity{ClientID: "bench", Sequence: uint64(i), HasSequence: true}}, cb); err != nil {
				b.Fatal(err)
			}
		}
		queued += time.Since(t0)
		wg.Add(n)
		b.StartTimer()
		e.CloseRound(context.Background())
		wg.Wait()
	}
	e.wg.Wait()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/n, "ns/req")
	b.ReportMetric(float64(queued.Nanoseconds())/float64(b.N)/n, "submit-ns/req")
	b.ReportMetric(float64(bytesOut.Load())/float64(b.N)/n, "sig-bytes")
}

// TestStatusCodes checks the KSI status every engine error maps to
// (docs/design/formats.md#status-codes).
func TestStatusCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want uint64
	}{
		{nil, 0}, {ErrLevelTooHigh, 0x104}, {ErrOverQuota, 0x105}, {ErrOverloaded, 0x106},
		{ErrBadRequest, 0x103}, {ErrUpstreamTime, 0x301}, {ErrUpstream, 0x300}, {ErrStopped, 0x300},
		{errors.New("other"), 0x200},
	} {
		if got := Status(tc.err); got != tc.want {
			t.Errorf("Status(%v) = %#x, want %#x", tc.err, got, tc.want)
		}
	}
}

// Shared-round requests get their legs before upstream answers; joined
// with the round's answer (round.AppendJoined) they are signatures like
// the ones the engine writes in full: requests of one round, half asking
// for each form, all verify, and the shared part is one value per round.
func TestSharedRoundAnswers(t *testing.T) {
	// Upstream waits until the test has seen every leg: legs do not wait
	// for upstream.
	legsSeen := make(chan struct{})
	up := UpstreamFunc(func(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
		<-legsSeen
		return (&fakeCalendar{}).Sign(ctx, root, level)
	})
	e := newEngine(t, up, Config{})
	const n = 200
	res := make([]chan Signed, n)
	legRes := make([]chan Leg, n)
	for i := range res {
		res[i], legRes[i] = make(chan Signed, 1), make(chan Leg, 1)
		r := Request{Hash: imprint(uint64(i)), Level: byte(i % 3), Identity: Identity{ClientID: "bob"}}
		var err error
		if i%2 == 0 {
			err = e.SubmitShared(r, func(x Leg) { legRes[i] <- x })
		} else {
			err = e.Submit(r, func(x Signed) { res[i] <- x })
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	e.CloseRound(context.Background())
	var shared *SharedRound
	legs := make([]Leg, n)
	for i := 0; i < n; i += 2 {
		legs[i] = <-legRes[i]
		select {
		case <-legs[i].Round.Done():
			t.Fatal("round done before upstream answered")
		default:
		}
	}
	close(legsSeen)
	for i := range res {
		var raw []byte
		if i%2 == 0 {
			x := legs[i]
			<-x.Round.Done()
			if x.Round.Err != nil {
				t.Fatal(x.Round.Err)
			}
			if x.Err != nil {
				t.Fatal(x.Err)
			}
			if x.Round == nil || len(x.Leg) == 0 {
				t.Fatalf("request %d: shared form not used: %+v", i, x)
			}
			if shared == nil {
				shared = x.Round
			} else if x.Round != shared {
				t.Fatalf("request %d: a second shared part for the same round", i)
			}
			var err error
			if raw, err = round.AppendJoined(nil, x.Round.Answer, x.Round.Alg, imprint(uint64(i)), x.Shape, x.Leg); err != nil {
				t.Fatal(err)
			}
		} else {
			x := <-res[i]
			if x.Err != nil {
				t.Fatal(x.Err)
			}
			raw = x.Signature
		}
		// The full form and the shared form are separate types: a
		// request gets the parts of the form it asked for only.
		select {
		case x := <-res[i]:
			t.Fatalf("request %d: a second answer %+v", i, x)
		case x := <-legRes[i]:
			t.Fatalf("request %d: a leg for the form not asked: %+v", i, x)
		default:
		}
		sig, err := ksi.ParseSignature(raw)
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: imprint(uint64(i)), InputLevel: uint64(i % 3)})
		if rep.Result != verifier.OK {
			t.Fatalf("request %d: %s %s", i, rep.Code, rep.Message)
		}
	}
	e.wg.Wait()
}

// orderedUpstream answers the root at level slowLevel only after another
// root's call has returned: the calendar may answer rounds in any order.
type orderedUpstream struct {
	fakeCalendar
	slowLevel byte
	otherDone chan struct{}
	once      sync.Once
}

func (u *orderedUpstream) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	if level == u.slowLevel {
		select {
		case <-u.otherDone:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		return u.fakeCalendar.Sign(ctx, root, level)
	}
	defer u.once.Do(func() { close(u.otherDone) })
	return u.fakeCalendar.Sign(ctx, root, level)
}

// Rounds are answered in the order they closed, even when upstream
// answers a later round first, so the longest-waiting requests go first.
func TestRoundsAnsweredInOrder(t *testing.T) {
	// Round 0 has 64 requests at level 2: its root is at level 2+1+6 = 9;
	// round 1's are at level 0, its root at 7. Round 0's is answered last.
	e := newEngine(t, &orderedUpstream{slowLevel: 9, otherDone: make(chan struct{})}, Config{})
	var mu sync.Mutex
	var order []int
	done := make(chan struct{}, 2)
	for rnd := range 2 {
		for k := range 64 {
			r := Request{Hash: imprint(uint64(rnd*100 + k)), Level: byte(2 - 2*rnd), Identity: Identity{ClientID: "carol"}}
			if err := e.Submit(r, func(x Signed) {
				if x.Err != nil {
					t.Error(x.Err)
				}
				mu.Lock()
				order = append(order, rnd)
				n := len(order)
				mu.Unlock()
				if n%64 == 0 {
					done <- struct{}{}
				}
			}); err != nil {
				t.Fatal(err)
			}
		}
		e.CloseRound(context.Background())
	}
	<-done
	<-done
	e.wg.Wait()
	for i, rnd := range order {
		if want := i / 64; rnd != want {
			t.Fatalf("answer %d belongs to round %d, want round %d: rounds answered out of order", i, rnd, want)
		}
	}
}

// When upstream fails, shared-round requests that have their legs learn it
// from the round (Err, then Done), the others from their callbacks; no
// request hears twice.
func TestSharedRoundUpstreamFailure(t *testing.T) {
	e := newEngine(t, &fakeCalendar{fail: errors.New("calendar down")}, Config{})
	var calls [4]atomic.Int64
	got := make(chan Signed, 8)
	gotLeg := make(chan Leg, 8)
	for i := range 4 {
		r := Request{Hash: imprint(uint64(i)), Identity: Identity{ClientID: "dave"}}
		var err error
		if i < 2 {
			err = e.SubmitShared(r, func(x Leg) { calls[i].Add(1); gotLeg <- x })
		} else {
			err = e.Submit(r, func(x Signed) { calls[i].Add(1); got <- x })
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	e.CloseRound(context.Background())
	var round *SharedRound
	for range 4 {
		select {
		case x := <-gotLeg:
			if x.Round == nil {
				t.Fatalf("shared-round request: no round (err %v)", x.Err)
			}
			round = x.Round
		case x := <-got:
			if !errors.Is(x.Err, ErrUpstream) {
				t.Fatalf("full-form request: err %v, want ErrUpstream", x.Err)
			}
		}
	}
	if round == nil {
		t.Fatal("no legs for the shared-round requests")
	}
	<-round.Done()
	if !errors.Is(round.Err, ErrUpstream) || round.Answer != nil {
		t.Fatalf("round: err %v answer %v", round.Err, round.Answer)
	}
	e.wg.Wait()
	for i := range calls {
		if n := calls[i].Load(); n != 1 {
			t.Fatalf("request %d: %d callbacks", i, n)
		}
	}
}

// Callers parked in Sign make the runtime start new goroutines with a
// larger stack (see caller.wait): 8 KiB, where these shallow callers
// would make it 4 KiB without the pad.
func TestSignPadsParkedStacks(t *testing.T) {
	e := newEngine(t, &fakeCalendar{}, Config{})
	const n = 2000
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if res := e.Sign(context.Background(), Request{Hash: imprint(uint64(i))}); res.Err != nil {
				t.Error(res.Err)
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for e.QueueLen() < n {
		if time.Now().After(deadline) {
			t.Fatalf("only %d of %d callers queued", e.QueueLen(), n)
		}
		time.Sleep(time.Millisecond)
	}
	runtime.GC() // the runtime sizes new stacks at each GC
	s := []metrics.Sample{{Name: "/gc/stack/starting-size:bytes"}}
	metrics.Read(s)
	e.CloseRound(context.Background())
	wg.Wait()
	if got := s[0].Value.Uint64(); got < 8192 {
		t.Fatalf("goroutines start with %d-byte stacks while %d callers are parked in Sign, want at least 8192", got, n)
	}
}

// heldUpstream signs only once release is closed, so that several rounds
// are answered at once, as the calendar answers a second's rounds.
type heldUpstream struct {
	fakeCalendar
	release chan struct{}
}

func (u *heldUpstream) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	select {
	case <-u.release:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return u.fakeCalendar.Sign(ctx, root, level)
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
}

// The next round's results are handed out only when every Sign caller of
// the round before has picked up its own: when a second's rounds are
// answered at once, the callers that waited longest run first.
func TestNextRoundWaitsForCallersToPickUp(t *testing.T) {
	var answering atomic.Int64
	up := &heldUpstream{release: make(chan struct{})}
	e := newEngine(t, up, Config{Answering: func(on bool) {
		if on {
			answering.Add(1)
		}
	}})
	e.turns.max = time.Hour
	// Round 1: two Sign callers that pick up when the test says so;
	// round 2: a callback.
	var callers []*caller
	second := twoRounds(t, e, func() {
		for i := range 2 {
			c, err := e.submitCaller(Request{Hash: imprint(uint64(i))})
			if err != nil {
				t.Fatal(err)
			}
			callers = append(callers, c)
		}
	})
	close(up.release)

	waitFor(t, "both rounds answered upstream", func() bool { return answering.Load() == 2 })
	waitFor(t, "round 1's results", func() bool { return len(callers[0].ch) == 1 && len(callers[1].ch) == 1 })
	if res := callers[0].wait(context.Background()); res.Err != nil || res.turn != nil {
		t.Fatalf("caller 1: err %v, turn %p", res.Err, res.turn)
	}
	// Without turns round 2 would be answered within microseconds of
	// round 1; with them it waits for the second caller (maxTurn is an
	// hour), however long this check waits.
	select {
	case <-second:
		t.Fatal("round 2 answered while a caller of round 1 had not picked up")
	case <-time.After(50 * time.Millisecond):
	}
	if res := callers[1].wait(context.Background()); res.Err != nil {
		t.Fatal(res.Err)
	}
	if res := awaitResult(t, "round 2 after round 1's callers picked up", second); res.Err != nil {
		t.Fatal(res.Err)
	}
	e.wg.Wait()
}

// A Sign caller that gave up (its context ended) does not hold its
// round's turn, whether it left before or after its result came.
func TestGoneCallerDoesNotHoldTheTurn(t *testing.T) {
	for _, leaveFirst := range []bool{true, false} {
		up := &heldUpstream{release: make(chan struct{})}
		e := newEngine(t, up, Config{})
		e.turns.max = time.Hour
		var gone *caller
		second := twoRounds(t, e, func() {
			var err error
			if gone, err = e.submitCaller(Request{Hash: imprint(1)}); err != nil {
				t.Fatal(err)
			}
		})
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if leaveFirst {
			if res := gone.wait(ctx); !errors.Is(res.Err, context.Canceled) {
				t.Fatalf("caller that left: err %v", res.Err)
			}
			close(up.release)
		} else {
			close(up.release)
			waitFor(t, "the result", func() bool { return len(gone.ch) == 1 })
			gone.wait(ctx) // either outcome: both are ready
		}
		if res := awaitResult(t, fmt.Sprintf("leaving first %v: round 2, with round 1's caller gone", leaveFirst), second); res.Err != nil {
			t.Fatal(res.Err)
		}
		e.wg.Wait()
	}
}

func newTurn(n int64) *turn {
	t := &turn{done: make(chan struct{})}
	t.left.Store(n)
	return t
}

func turnEnded(t *turn) bool {
	select {
	case <-t.done:
		return true
	default:
		return false
	}
}

// Every way a caller leaves counts once towards its round's turn.
func TestCallerPicksUpOnce(t *testing.T) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	sig := []byte{1, 2, 3}

	// Answered, then waits: gets the result, counts once (of two).
	tn := newTurn(2)
	c := &caller{ch: make(chan Signed, 1)}
	c.deliver(Signed{Signature: sig, turn: tn})
	if res := c.wait(context.Background()); string(res.Signature) != string(sig) || res.turn != nil || tn.left.Load() != 1 {
		t.Fatalf("answered caller: %+v, %d left of 2", res, tn.left.Load())
	}

	// Gone before its result: the result counts once, on delivery.
	tn = newTurn(2)
	c = &caller{ch: make(chan Signed, 1)}
	if res := c.wait(cancelled); !errors.Is(res.Err, context.Canceled) {
		t.Fatalf("gone caller: %v", res.Err)
	}
	if tn.left.Load() != 2 {
		t.Fatal("a caller that left before its result counted at once")
	}
	c.deliver(Signed{Signature: sig, turn: tn})
	if tn.left.Load() != 1 || len(c.ch) != 0 {
		t.Fatalf("result for a gone caller: %d left of 2, %d results queued", tn.left.Load(), len(c.ch))
	}

	// Its context ends while the result is being delivered (the delivery
	// has claimed the caller but not sent yet): the caller waits for it
	// and returns it.
	tn = newTurn(1)
	c = &caller{ch: make(chan Signed, 1)}
	c.state.Store(callerAnswered)
	got := make(chan Signed)
	go func() { got <- c.wait(cancelled) }()
	c.ch <- Signed{Signature: sig, turn: tn}
	if res := <-got; string(res.Signature) != string(sig) || res.Err != nil || !turnEnded(tn) || tn.left.Load() != 0 {
		t.Fatalf("caller answered as it left: %+v, turn ended %v, %d left", res, turnEnded(tn), tn.left.Load())
	}
}

// twoRounds submits first as round 1, closes it, then a callback request
// as round 2, closes it, and returns round 2's result channel.
func twoRounds(t *testing.T, e *Engine, first func()) chan Signed {
	t.Helper()
	first()
	e.CloseRound(context.Background())
	second := make(chan Signed, 1)
	if err := e.Submit(Request{Hash: imprint(99)}, func(r Signed) { second <- r }); err != nil {
		t.Fatal(err)
	}
	e.CloseRound(context.Background())
	return second
}

func awaitResult(t *testing.T, what string, ch chan Signed) Signed {
	t.Helper()
	select {
	case res := <-ch:
		return res
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: no result", what)
		return Signed{}
	}
}

func awaitLeg(t *testing.T, ch chan Leg) Leg {
	t.Helper()
	select {
	case x := <-ch:
		return x
	case <-time.After(10 * time.Second):
		t.Fatal("leg: no result")
		return Leg{}
	}
}

// A caller that never picks up holds the next round for maxTurn only,
// and the metrics count it.
func TestTurnRunsOut(t *testing.T) {
	reg := prometheus.NewRegistry()
	e := newEngine(t, &fakeCalendar{}, Config{Metrics: NewMetrics(reg)})
	e.turns.max = 10 * time.Millisecond
	second := twoRounds(t, e, func() {
		if _, err := e.submitCaller(Request{Hash: imprint(1)}); err != nil { // never waits
			t.Fatal(err)
		}
	})
	if res := awaitResult(t, "round 2", second); res.Err != nil {
		t.Fatal(res.Err)
	}
	e.wg.Wait()
	if n := testutil.ToFloat64(e.cfg.Metrics.turnTimeouts); n != 1 {
		t.Fatalf("turn timeouts: %v, want 1", n)
	}
}

// Requests in the shared-round form take no part in the turn: a round
// mixing them with waiting callers ends its turn when the callers have
// picked up.
func TestTurnWithSharedRequests(t *testing.T) {
	e := newEngine(t, &fakeCalendar{}, Config{})
	e.turns.max = time.Hour
	var callers []*caller
	legs := make(chan Leg, 2)
	second := twoRounds(t, e, func() {
		for i := range 4 {
			r := Request{Hash: imprint(uint64(i))}
			if i%2 == 0 {
				if err := e.SubmitShared(r, func(x Leg) { legs <- x }); err != nil {
					t.Fatal(err)
				}
				continue
			}
			c, err := e.submitCaller(r)
			if err != nil {
				t.Fatal(err)
			}
			callers = append(callers, c)
		}
	})
	for _, c := range callers {
		if res := c.wait(context.Background()); res.Err != nil || len(res.Signature) == 0 {
			t.Fatalf("caller: %v", res.Err)
		}
	}
	for range 2 {
		if leg := awaitLeg(t, legs); leg.Err != nil || leg.Round == nil {
			t.Fatalf("shared-round request: %+v", leg)
		}
	}
	if res := awaitResult(t, "round 2", second); res.Err != nil {
		t.Fatal(res.Err)
	}
	e.wg.Wait()
}

// A round that fails upstream hands out errors and does not hold the
// next round, whether or not its callers pick them up.
func TestFailedRoundHasNoTurn(t *testing.T) {
	e := newEngine(t, &fakeCalendar{fail: errors.New("calendar down")}, Config{})
	e.turns.max = time.Hour
	second := twoRounds(t, e, func() {
		if _, err := e.submitCaller(Request{Hash: imprint(1)}); err != nil { // never waits
			t.Fatal(err)
		}
	})
	if res := awaitResult(t, "round 2", second); !errors.Is(res.Err, ErrUpstream) {
		t.Fatalf("round 2: %v, want ErrUpstream", res.Err)
	}
	e.wg.Wait()
}

// levelHeldUpstream holds roots at or above level until release is closed.
type levelHeldUpstream struct {
	fakeCalendar
	level   byte
	release chan struct{}
}

func (u *levelHeldUpstream) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	if level >= u.level {
		select {
		case <-u.release:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	return u.fakeCalendar.Sign(ctx, root, level)
}

// With more than two seconds' worth of rounds waiting to be answered, the
// engine is catching up and rounds do not wait for their callers.
func TestNoTurnsWhileBehind(t *testing.T) {
	up := &levelHeldUpstream{level: 6, release: make(chan struct{})}
	e := newEngine(t, up, Config{Period: time.Second}) // behind beyond 2 rounds
	e.turns.max = time.Hour
	// Round 1: a caller that never picks up; its root is held upstream.
	if _, err := e.submitCaller(Request{Hash: imprint(1), Level: 5}); err != nil {
		t.Fatal(err)
	}
	e.CloseRound(context.Background())
	// Rounds 2-4 are answered upstream at once and wait for round 1.
	results := make(chan Signed, 3)
	for i := range 3 {
		if err := e.Submit(Request{Hash: imprint(uint64(10 + i))}, func(r Signed) { results <- r }); err != nil {
			t.Fatal(err)
		}
		e.CloseRound(context.Background())
	}
	waitFor(t, "rounds 2-4 answered upstream", func() bool { return e.turns.answering.Load() == 3 })
	close(up.release)
	for range 3 {
		if res := awaitResult(t, "a later round", results); res.Err != nil {
			t.Fatal(res.Err)
		}
	}
	e.wg.Wait()
}
