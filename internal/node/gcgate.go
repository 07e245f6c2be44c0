package node

import (
	"context"
	"runtime/debug"
	"runtime/metrics"
	"sync"
	"time"

	"github.com/tempel-ksi/tempel/internal/schedule"
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
// The gate follows the second schedule (internal/schedule) on the
// node's clock, with the timing of its configuration. The GC percent is
// the process's, so every gate in a process holds it through one
// gcPercentHold: it is raised while any gate is held, and the percent it
// found is restored when none is, whatever was set meanwhile.
type gcGate struct {
	cfg    gcGateConfig
	pct    *gcPercentHold
	normal int // the GOGC percent to restore
	raised int // the percent while held

	mu        sync.Mutex
	windows   int       // run loops inside their window around a second's end
	windowEnd time.Time // the second's end of the latest window (for tests)
	answerers int       // rounds answered upstream and not yet done
	answered  int       // rounds that have reported answering (for tests)
	expired   bool      // past MaxTail: answering no longer holds the gate
	held      bool      // this gate holds the raised percent
}

// gcGateConfig is the gate's clock and timing around each second's end
// T: held from T-Lead, so that a cycle starting just before the burst has
// time to finish, until T+Tail (upstream's answer arrives within its
// grace) or, while rounds hand out answers, until T+MaxTail at most: a
// node answering all the time (saturated) can still start a cycle in the
// rest of each second. Zero fields take the defaults gcLead, gcTail,
// gcMaxTail and time.Now.
type gcGateConfig struct {
	Now                 func() time.Time
	Lead, Tail, MaxTail time.Duration
}

const (
	gcLead    = 400 * time.Millisecond
	gcTail    = 100 * time.Millisecond
	gcMaxTail = 500 * time.Millisecond
	// gcRaise multiplies the GC percent while the gate is held, up to
	// gcMaxRaised.
	gcRaise     = 4
	gcMaxRaised = 100_000
)

// gcPercentHold counts the gates holding the process's GC percent raised.
type gcPercentHold struct {
	normal, raised int

	mu    sync.Mutex
	holds int
}

// processGC is the process's GC percent (the runtime has one): every gate
// holds it through this, so that a second node in a process cannot take
// the first one's raised percent for the normal one. It is nil when
// garbage collection is off.
var processGC = sync.OnceValue(func() *gcPercentHold {
	normal := gcPercent()
	if normal <= 0 {
		return nil
	}
	return &gcPercentHold{normal: normal, raised: raisedPercent(normal)}
})

// hold raises the percent (on) or ends a hold of it.
func (p *gcPercentHold) hold(on bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if on {
		if p.holds++; p.holds == 1 {
			debug.SetGCPercent(p.raised)
		}
	} else if p.holds--; p.holds == 0 {
		debug.SetGCPercent(p.normal)
	}
}

// newGCGate returns a gate on the process's GC percent (GOGC), or nil
// when garbage collection is off.
func newGCGate(cfg gcGateConfig) *gcGate {
	// Checked first: with GC off now, the process's hold is not taken
	// (it would keep "off" as the percent to restore).
	if gcPercent() <= 0 {
		return nil
	}
	pct := processGC()
	if pct == nil {
		return nil
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Lead == 0 {
		cfg.Lead = gcLead
	}
	if cfg.Tail == 0 {
		cfg.Tail = gcTail
	}
	if cfg.MaxTail == 0 {
		cfg.MaxTail = gcMaxTail
	}
	return &gcGate{cfg: cfg, pct: pct, normal: pct.normal, raised: pct.raised}
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
	g.pct.hold(hold)
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

// run holds the gate around every second's end on the schedule until ctx
// is cancelled.
func (g *gcGate) run(ctx context.Context) {
	c := g.cfg
	inWindow := false
	defer func() {
		if inWindow {
			g.change(func() { g.windows-- })
		}
	}()
	for {
		end := schedule.NextEnd(c.Now())
		if !g.sleepUntil(ctx, end.Add(-c.Lead)) {
			return
		}
		inWindow = true
		g.change(func() { g.windows++; g.windowEnd = end; g.expired = false })
		if !g.sleepUntil(ctx, end.Add(c.Tail)) {
			return
		}
		inWindow = false
		g.change(func() { g.windows-- })
		if !g.sleepUntil(ctx, end.Add(c.MaxTail)) {
			return
		}
		g.change(func() { g.expired = true })
	}
}

// sleepUntil waits until t on the gate's clock and reports whether ctx is
// still live.
func (g *gcGate) sleepUntil(ctx context.Context, t time.Time) bool {
	timer := time.NewTimer(t.Sub(g.cfg.Now()))
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-ctx.Done():
		return false
	}
}
