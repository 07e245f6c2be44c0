package node

import (
	"context"
	"runtime/debug"
	"testing"
	"time"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// gcPercent reads the process's GC percent.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

func (g *gcGate) holding() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.holders
}

func TestGCGateHoldsAndRestores(t *testing.T) {
	normal := gcPercent()
	if normal <= 0 {
		t.Skip("GC is off")
	}
	g := &gcGate{normal: normal, raised: normal * gcRaise}
	g.answering(true)
	g.hold()
	if got := gcPercent(); got != normal*gcRaise {
		t.Fatalf("held: GC percent %d, want %d", got, normal*gcRaise)
	}
	g.answering(false)
	if got := gcPercent(); got != normal*gcRaise {
		t.Fatalf("one of two holders left: GC percent %d, want %d", got, normal*gcRaise)
	}
	g.release()
	if got := gcPercent(); got != normal {
		t.Fatalf("released: GC percent %d, want %d", got, normal)
	}
}

// The gate is held from gcLead before each second ends until gcTail after.
func TestGCGateHeldAroundSecondEnd(t *testing.T) {
	normal := gcPercent()
	if normal <= 0 {
		t.Skip("GC is off")
	}
	g := &gcGate{normal: normal, raised: normal * gcRaise}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); g.run(ctx) }()
	defer func() { cancel(); <-done }()

	waitUntil := func(what string, cond func() bool) time.Time {
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
	// Start from an open gate, so the next hold is seen as it begins.
	waitUntil("the gate open", func() bool { return g.holding() == 0 })
	held := waitUntil("the gate held", func() bool { return g.holding() == 1 })
	if p := gcPercent(); p != normal*gcRaise {
		t.Fatalf("held: GC percent %d", p)
	}
	opened := waitUntil("the gate open again", func() bool { return g.holding() == 0 })
	if p := gcPercent(); p != normal {
		t.Fatalf("open: GC percent %d", p)
	}
	// Held about gcLead+gcTail, across a second's end.
	end := held.Truncate(time.Second).Add(time.Second)
	if d := end.Sub(held); d > gcLead {
		t.Errorf("held %v before the second's end, want at most %v", d, gcLead)
	}
	if !opened.After(end) || opened.Sub(end) < gcTail {
		t.Errorf("opened %v after the second's end, want at least %v", opened.Sub(end), gcTail)
	}
}

// A signing node's aggregator reports answering to the process's gate,
// and a stopped node leaves the gate open.
func TestNodeGCGateWiredAndReleased(t *testing.T) {
	g := processGCGate()
	if g == nil {
		t.Skip("GC is off")
	}
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	if s.n.gc != g || s.n.agg.Config().Answering == nil {
		t.Fatal("the aggregator does not report answering to the process's GC gate")
	}
	resp, err := tempelv1.NewSignerClient(dial(t, s.addr)).Sign(context.Background(), &tempelv1.SignRequest{Hash: docHash("gc")})
	if err != nil || len(resp.GetSignature()) == 0 {
		t.Fatalf("sign: %v", err)
	}
	s.stop()
	if n := g.holding(); n != 0 {
		t.Fatalf("stopped node leaves the gate held %d times", n)
	}
	if p, want := gcPercent(), g.normal; p != want {
		t.Fatalf("GC percent %d after the node stopped, want %d", p, want)
	}
}
