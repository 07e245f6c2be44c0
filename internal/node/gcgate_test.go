package node

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// state returns whether the gate is held, with its windows and answerers.
func (g *gcGate) state() (held bool, windows, answerers int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.held, g.windows, g.answerers
}

func (g *gcGate) isHeld() bool { h, _, _ := g.state(); return h }

func newTestGate(t *testing.T) *gcGate {
	g := newGCGate(gcGateConfig{})
	if g == nil {
		t.Skip("GC is off")
	}
	return g
}

func TestGCGatePercents(t *testing.T) {
	for _, c := range []struct{ normal, raised int }{{100, 400}, {400, 1600}, {50_000, gcMaxRaised}, {1 << 30, 1 << 30}} {
		if got := raisedPercent(c.normal); got != c.raised {
			t.Errorf("raisedPercent(%d) = %d, want %d", c.normal, got, c.raised)
		}
	}
	old := debug.SetGCPercent(-1)
	defer debug.SetGCPercent(old)
	if p := gcPercent(); p != -1 {
		t.Fatalf("GC off reads as %d, want -1", p)
	}
	if g := newGCGate(gcGateConfig{}); g != nil {
		t.Fatal("a gate with GC off")
	}
	debug.SetGCPercent(250)
	if p := gcPercent(); p != 250 {
		t.Fatalf("GC percent 250 reads as %d", p)
	}
}

func wantGCPercent(t *testing.T, what string, want int) {
	t.Helper()
	if got := gcPercent(); got != want {
		t.Fatalf("%s: GC percent %d, want %d", what, got, want)
	}
}

func TestGCGateHoldsAndRestores(t *testing.T) {
	g := newTestGate(t)
	g.answering(true)
	g.change(func() { g.windows++ })
	wantGCPercent(t, "held twice", g.raised)
	g.answering(false)
	wantGCPercent(t, "one of two holders left", g.raised)
	g.change(func() { g.windows-- })
	wantGCPercent(t, "released", g.normal)
	// Past gcMaxTail, answering alone no longer holds the gate.
	g.answering(true)
	wantGCPercent(t, "answering", g.raised)
	g.change(func() { g.expired = true })
	wantGCPercent(t, "answering past the longest hold", g.normal)
	g.answering(false)
	wantGCPercent(t, "released", g.normal)
}

// waitUntil polls cond and returns when it first held, failing after 5 s.
func waitUntil(t *testing.T, what string, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("gave up waiting for %s", what)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Now()
}

// runGate runs g's loop for the test; it returns the second's end of the
// first window seen held.
func runGate(t *testing.T, g *gcGate) time.Time {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	t.Cleanup(func() {
		cancel()
		<-done
		if held, w, _ := g.state(); held || w != 0 {
			t.Errorf("stopped loop left the gate held %v, windows %d", held, w)
		}
	})
	// The percent and the window are read with the state they belong to.
	var end time.Time
	var percent int
	held := waitUntil(t, "the gate held", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		end, percent = g.windowEnd, gcPercent()
		return g.held
	})
	if percent != g.raised {
		t.Errorf("held: GC percent %d, want %d", percent, g.raised)
	}
	if d := end.Sub(held); d > gcLead {
		t.Errorf("held %v before the second's end, want at most %v", d, gcLead)
	}
	return end
}

// The gate is held from gcLead before each second ends until gcTail after.
func TestGCGateHeldAroundSecondEnd(t *testing.T) {
	g := newTestGate(t)
	end := runGate(t, g)
	opened := waitUntil(t, "the gate open again", func() bool { return !g.isHeld() })
	wantGCPercent(t, "open", g.normal)
	if d := opened.Sub(end); d < gcTail || d > gcMaxTail {
		t.Errorf("opened %v after the second's end, want about %v", d, gcTail)
	}
}

// Rounds handing out answers keep the gate held after gcTail, up to
// gcMaxTail after the second's end.
func TestGCGateAnsweringHoldsUntilMaxTail(t *testing.T) {
	g := newTestGate(t)
	end := runGate(t, g)
	g.answering(true)
	defer g.answering(false)
	opened := waitUntil(t, "the gate open again", func() bool { return !g.isHeld() })
	if d := opened.Sub(end); d < gcMaxTail {
		t.Errorf("opened %v after the second's end while answering, want at least %v", d, gcMaxTail)
	}
	// The next second's window holds it again, answering or not.
	waitUntil(t, "the next hold", g.isHeld)
}

// A signing node's aggregator reports answering to its gate, which holds
// the process's GC percent, and a stopped node leaves the gate open. (No
// other node may run in the process meanwhile: the package's tests do
// not run in parallel.)
func TestNodeGCGateWiredAndReleased(t *testing.T) {
	pct := processGC()
	if pct == nil {
		t.Skip("GC is off")
	}
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	g := s.n.gc
	if g == nil || g.pct != pct {
		t.Fatal("the node's GC gate does not hold the process's GC percent")
	}
	g.mu.Lock()
	before := g.answered
	g.mu.Unlock()
	resp, err := tempelv1.NewSignerClient(dial(t, s.addr)).Sign(context.Background(), &tempelv1.SignRequest{Hash: docHash("gc")})
	if err != nil || len(resp.GetSignature()) == 0 {
		t.Fatalf("sign: %v", err)
	}
	g.mu.Lock()
	after := g.answered
	g.mu.Unlock()
	if after == before {
		t.Fatal("a round was answered without the gate hearing of it")
	}
	s.stop()
	if held, w, a := g.state(); held || w != 0 || a != 0 {
		t.Fatalf("stopped node leaves the gate held %v (windows %d, answering %d)", held, w, a)
	}
	pct.mu.Lock()
	holds := pct.holds
	pct.mu.Unlock()
	if holds != 0 {
		t.Fatalf("stopped node leaves %d holds on the process's GC percent", holds)
	}
	wantGCPercent(t, "after the node stopped", g.normal)
}

// The gate follows the second schedule on its configured clock, not the
// process's wall clock: with a clock half a second ahead, it is held in
// the lead of a second's end on that clock.
func TestGCGateFollowsItsClock(t *testing.T) {
	if processGC() == nil {
		t.Skip("GC is off")
	}
	now := func() time.Time { return time.Now().Add(500 * time.Millisecond) }
	g := newGCGate(gcGateConfig{Now: now})
	if g == nil {
		t.Skip("GC is off")
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	defer func() { cancel(); <-done }()
	var end, at time.Time
	waitUntil(t, "the gate held", func() bool {
		g.mu.Lock()
		defer g.mu.Unlock()
		end, at = g.windowEnd, now()
		return g.held
	})
	if end.Nanosecond() != 0 {
		t.Fatalf("window ends at %v, not at a second's end", end)
	}
	// On the wall clock the hold would start 100 ms after this second
	// ended; on the gate's clock it starts gcLead before it ends.
	if at.Before(end.Add(-gcLead)) || !at.Before(end) {
		t.Fatalf("held at %v on the gate's clock, want within %v before the second's end %v", at, gcLead, end)
	}
}
