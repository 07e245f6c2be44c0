package aggregator

import (
	"sync/atomic"
	"time"
)

// Waiting time of parked callers. The memory budget bounds the bytes of
// waiting requests, not how long they wait: at twice the node's capacity
// a full default budget holds about two seconds of answers' worth of
// parked callers, and every admitted caller waits that long. So while
// the node refuses requests, parked callers are also bounded by the rate
// it answers them at: each PaceWindow, the bytes they may hold become
// PaceWait worth of the callers answered over the last two windows,
// never less than half the budget. A node that refused nothing in the
// window just ended (below its capacity, or a load just starting) is
// bounded by the memory budget alone: there the rate measures the load,
// not the capacity. The memory budget applies on top in every case, and
// a refusal here is the budget's own (ErrOverloaded).
const (
	// PaceWindow is how often the answer rate is measured.
	PaceWindow = time.Second
	// PaceWait is how much of the answer rate may wait: a round waits for
	// the calendar's next second, so one second of answers is in flight
	// at full load, and a fifth more absorbs the second's jitter.
	PaceWait = 1200 * time.Millisecond
	// PaceFloorShare: the floor of the caller limit is the budget's limit
	// divided by it.
	PaceFloorShare = 2
)

// pace counts the parked callers' bytes and those answered in the
// current window.
type pace struct {
	held     atomic.Int64 // bytes parked callers hold
	answered atomic.Int64 // bytes released by callers in this window
	start    atomic.Int64 // the window's start, UnixNano; 0 before the first
	limit    atomic.Int64 // bytes parked callers may hold; 0 before the first window
	// The window before: bytes answered and its length (ns).
	prev, prevEl atomic.Int64
}

// ReserveCaller takes CostCaller for a parked caller; false (and nothing
// taken) when the caller limit or the memory budget has no room.
func (b *Budget) ReserveCaller() bool {
	if b == nil {
		return true
	}
	if b.pace.held.Add(CostCaller) > b.callerLimit() {
		b.pace.held.Add(-CostCaller)
		b.refuse()
		return false
	}
	if !b.Reserve(CostCaller) {
		b.pace.held.Add(-CostCaller)
		return false
	}
	return true
}

// AdmitsCaller reports whether a parked caller would fit now.
func (b *Budget) AdmitsCaller() bool {
	if b == nil {
		return true
	}
	if b.pace.held.Load()+CostCaller > b.callerLimit() {
		b.refuse()
		return false
	}
	return b.Admits(CostCaller)
}

// ReleaseCaller returns what ReserveCaller took, counting it as answered.
func (b *Budget) ReleaseCaller() {
	if b == nil {
		return
	}
	b.pace.held.Add(-CostCaller)
	b.pace.answered.Add(CostCaller)
	b.Release(CostCaller)
}

// unreserveCaller returns what ReserveCaller took for a caller that was
// never submitted: it does not count as answered.
func (b *Budget) unreserveCaller() {
	if b == nil {
		return
	}
	b.pace.held.Add(-CostCaller)
	b.Release(CostCaller)
}

// callerLimit is the bytes parked callers may hold now, measured again
// when a window has ended.
func (b *Budget) callerLimit() int64 {
	p := &b.pace
	now := b.now().UnixNano()
	s := p.start.Load()
	if el := now - s; el >= int64(PaceWindow) && p.start.CompareAndSwap(s, now) {
		answered := p.answered.Swap(0)
		// Until a window has been measured, and after a window much
		// longer than PaceWindow (no caller came), the memory budget
		// alone bounds callers: a cold or idle node has no rate to go by.
		lim := b.limit
		// Only a node that refused requests in the window just ended is
		// bounded by its rate: below its capacity (a load that is just
		// starting included) the memory budget never refuses, and the
		// rate would only measure the load.
		refusing := b.lastRef.Load() >= s
		if refusing && s != 0 && el < 2*int64(PaceWindow) && answered > 0 && p.prev.Load() > 0 {
			// The rate over two windows: one window catches one or two of
			// the calendar's once-a-second bursts of answers.
			rate := float64(answered+p.prev.Load()) / float64(el+p.prevEl.Load())
			lim = max(b.limit/PaceFloorShare, int64(rate*float64(PaceWait)))
		}
		p.prev.Store(answered)
		p.prevEl.Store(el)
		p.limit.Store(lim)
		return lim
	}
	if l := p.limit.Load(); l != 0 {
		return l
	}
	return b.limit
}
