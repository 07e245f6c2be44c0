package node

import (
	"context"
	"runtime/debug"
	"sync"
	"time"
)

// gcGate holds off garbage collection while a second's answers go out.
//
// Why: the calendar answers a whole second at once, so a signing node
// hands out most of its answers in a burst right after each second ends,
// to tens of thousands of parked callers. A GC cycle that marks during
// the burst (a few hundred milliseconds with that many parked calls)
// takes CPU from it and stalls it, and the requests that waited longest
// go out late: in traces at 40,000 unary calls/s on the development
// machine, every second that missed the latency target had a GC cycle
// marking in the first 400 ms of its burst, and no other second did
// (and a cycle marking then took 3 times as long as one in the quiet
// part, with twice the stacks to scan). The gate raises the GC target from
// shortly before each second ends until the answers are out; a cycle due
// meanwhile starts when the gate opens, in the quiet part of the second.
// Nothing is given up: the raised target still bounds the heap (the
// runtime collects when it is reached), and the GC runs as often as
// before, only at other times.
type gcGate struct {
	normal int // the GOGC percent to restore
	raised int // the percent while held

	mu      sync.Mutex
	holders int
}

// Timing of the gate around each second's end T: held from T-gcLead,
// so that a cycle starting just before the burst has time to finish,
// until T+gcTail (upstream's answer arrives within its grace) or, when
// later, until the last round answered meanwhile has its results out.
const (
	gcLead = 400 * time.Millisecond
	gcTail = 100 * time.Millisecond
	// gcRaise multiplies the GC percent while the gate is held.
	gcRaise = 4
)

// processGCGate is the process's one gate (the GC percent is the
// process's): every node in a process shares it, so a second node cannot
// take the first one's raised percent for the normal one.
var processGCGate = sync.OnceValue(newGCGate)

// newGCGate returns a gate around the process's GC percent (GOGC), or
// nil when garbage collection is off.
func newGCGate() *gcGate {
	normal := debug.SetGCPercent(100)
	debug.SetGCPercent(normal)
	if normal <= 0 {
		return nil
	}
	return &gcGate{normal: normal, raised: normal * gcRaise}
}

// hold raises the GC target until a matching release.
func (g *gcGate) hold() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.holders == 0 {
		debug.SetGCPercent(g.raised)
	}
	g.holders++
}

// release restores the GC target once nothing holds the gate.
func (g *gcGate) release() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.holders--
	if g.holders == 0 {
		debug.SetGCPercent(g.normal)
	}
}

// answering is the aggregator's Answering hook.
func (g *gcGate) answering(on bool) {
	if on {
		g.hold()
	} else {
		g.release()
	}
}

// run holds the gate around every second's end until ctx is cancelled.
func (g *gcGate) run(ctx context.Context) {
	for {
		end := time.Now().Truncate(time.Second).Add(time.Second)
		if !g.sleepUntil(ctx, end.Add(-gcLead)) {
			return
		}
		g.hold()
		ok := g.sleepUntil(ctx, end.Add(gcTail))
		g.release()
		if !ok {
			return
		}
	}
}

// sleepUntil waits until t and reports whether ctx is still live.
func (g *gcGate) sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
