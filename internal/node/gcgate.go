package node

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
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
// go out late: traced, such cycles were what the seconds that missed the
// latency target had in common (docs/design/latency.md#the-gc-gate has
// the traces and figures). The gate raises the GC target from
// shortly before each second ends until the answers are out (or half the
// second has passed); a cycle due meanwhile starts when the gate opens,
// in the quiet part of the second. The raised target still bounds the
// heap (the runtime collects when it is reached). A cycle starts at most
// 0.9 s later than it would have; where cycles would come more often
// than once a second (a saturated node with a small GOGC), usually one
// starts in each open part of a second, and the heap grows towards the
// raised target (raisedPercent).
//
// Once created, the gate owns the process's GC percent: it restores the
// percent it found, whatever was set meanwhile.
type gcGate struct {
	normal int // the GOGC percent to restore
	raised int // the percent while held

	mu        sync.Mutex
	windows   int       // run loops inside their window around a second's end
	windowEnd time.Time // the second's end of the latest window (for tests)
	answerers int       // rounds answered upstream and not yet done
	answered  int       // rounds that have reported answering (for tests)
	expired   bool      // past gcMaxTail: answering no longer holds the gate
	held      bool      // the raised percent is in force
}

// Timing of the gate around each second's end T: held from T-gcLead, so
// that a cycle starting just before the burst has time to finish, until
// T+gcTail (upstream's answer arrives within its grace) or, while rounds
// hand out answers, until T+gcMaxTail at most: a node answering all the
// time (saturated) can still start a cycle in the rest of each second.
const (
	gcLead    = 400 * time.Millisecond
	gcTail    = 100 * time.Millisecond
	gcMaxTail = 500 * time.Millisecond
	// gcRaise multiplies the GC percent while the gate is held, up to
	// gcMaxRaised.
	gcRaise     = 4
	gcMaxRaised = 100_000
)

// processGCGate is the process's one gate (the GC percent is the
// process's): every node in a process shares it, so a second node cannot
// take the first one's raised percent for the normal one.
var processGCGate = sync.OnceValue(newGCGate)

// newGCGate returns a gate around the process's GC percent (GOGC), or
// nil when garbage collection is off.
func newGCGate() *gcGate {
	normal := gcPercent()
	if normal <= 0 {
		return nil
	}
	return &gcGate{normal: normal, raised: raisedPercent(normal)}
}

// raisedPercent is the GC percent while the gate is held: gcRaise times
// normal, at most gcMaxRaised (a product too large for the runtime's
// 32-bit percent would wrap negative and turn GC off), never below normal.
func raisedPercent(normal int) int {
	return max(normal, min(normal*gcRaise, gcMaxRaised))
}

// gcPercent reads the process's GC percent without changing it.
func gcPercent() int {
	s := []metrics.Sample{{Name: "/gc/gogc:percent"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 100 // the runtime's default
	}
	// GOGC=off reads as the largest uint64, that is -1.
	return int(int64(s[0].Value.Uint64()))
}

// update sets the GC percent the gate's state asks for; g.mu is held.
func (g *gcGate) update() {
	hold := g.windows > 0 || (g.answerers > 0 && !g.expired)
	if hold == g.held {
		return
	}
	g.held = hold
	if hold {
		debug.SetGCPercent(g.raised)
	} else {
		debug.SetGCPercent(g.normal)
	}
}

// change applies f to the gate's state under its lock.
func (g *gcGate) change(f func()) {
	g.mu.Lock()
	defer g.mu.Unlock()
	f()
	g.update()
}

// answering is the aggregator's Answering hook.
func (g *gcGate) answering(on bool) {
	g.change(func() {
		if on {
			g.answerers++
			g.answered++
		} else {
			g.answerers--
		}
	})
}

// run holds the gate around every second's end until ctx is cancelled.
func (g *gcGate) run(ctx context.Context) {
	inWindow := false
	defer func() {
		if inWindow {
			g.change(func() { g.windows-- })
		}
	}()
	for {
		end := time.Now().Truncate(time.Second).Add(time.Second)
		if !sleepUntil(ctx, end.Add(-gcLead)) {
			return
		}
		inWindow = true
		g.change(func() { g.windows++; g.windowEnd = end; g.expired = false })
		if !sleepUntil(ctx, end.Add(gcTail)) {
			return
		}
		inWindow = false
		g.change(func() { g.windows-- })
		if !sleepUntil(ctx, end.Add(gcMaxTail)) {
			return
		}
		g.change(func() { g.expired = true })
	}
}

// sleepUntil waits until t and reports whether ctx is still live.
func sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(time.Until(t))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
