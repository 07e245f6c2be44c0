package aggregator

import (
	"fmt"
	"sync/atomic"
	"time"
)

// Costs of waiting requests, charged to a Budget from the moment a
// request is admitted until what it holds is free again. They are upper
// bounds of what was measured on linux/amd64 with Go 1.26 and grpc-go
// v1.85 (TestRequestCosts in internal/node measures them with
// runtime/metrics, and fails when a measured cost exceeds its constant).
const (
	// CostCaller is a caller parked until its round is answered: a unary
	// gRPC or REST Sign call, or one request of a KSI PDU. Measured: a
	// parked unary gRPC call holds 11,615 bytes of heap and stack (20,000
	// calls): the handler's 8 KiB goroutine stack (see caller.wait), the
	// gRPC stream with its context, metadata and buffers, the request and
	// its place in the round. (Its signature, about 1.4 KB, exists only
	// as the caller is woken.)
	CostCaller = 12 << 10
	// CostStreamed is a request read from a stream, from its arrival
	// until its answer has been sent: its place in the round (about 100
	// bytes), then its answer, a complete signature, waiting for the
	// sender. Measured: 1,769 to 2,073 bytes (50,000 requests; the
	// answer's calendar chain, and so its size, varies with the second),
	// hence a quarter of headroom.
	CostStreamed = 2560
	// CostLeg is CostStreamed in the shared-round form, from its arrival
	// until its leg has been sent (its round's shared part is sent once
	// per stream, and held by the round). Measured: 1,418 bytes in a
	// round of 50,000 (a leg grows with the round's depth).
	CostLeg = 1536
)

// DefaultBudget is the budget of an engine configured without one: the
// half of a node's default memory limit (1.75 GiB) that waiting requests
// may hold; the rest is for everything else (rounds being built, gRPC
// connections' buffers, the calendar, garbage not yet collected).
const DefaultBudget = 896 << 20

// Budget bounds the memory that waiting requests hold in a node: requests
// queued for a round, rounds waiting for the calendar, callers parked
// for their answers and answers not yet sent to slow readers. Each
// admitted request reserves its cost (CostCaller, CostStreamed) and
// releases it once; what does not fit is refused at once, with
// ErrOverloaded, instead of queueing until it times out.
//
// Reserve and Release are a few atomic operations: the budget sits on
// every request's path. A nil *Budget admits everything.
type Budget struct {
	limit   int64
	used    atomic.Int64
	peak    atomic.Int64 // highest used since the last TakePeak
	refused atomic.Int64 // requests refused, ever
	lastRef atomic.Int64 // when the last request was refused (UnixNano)
	now     func() time.Time
	pace    pace // parked callers, bounded by the answer rate (pace.go)
}

// NewBudget returns a budget of limit bytes.
func NewBudget(limit int64) *Budget {
	return &Budget{limit: limit, now: time.Now}
}

// errBudget is the refusal, made once: refusing must stay cheap when it
// is most of what the node does.
var errBudget = fmt.Errorf("%w: the node's memory for waiting requests is in use, try again shortly", ErrOverloaded)

// Reserve takes cost bytes; false (and nothing taken) when they do not fit.
func (b *Budget) Reserve(cost int64) bool {
	if b == nil {
		return true
	}
	u := b.used.Add(cost)
	if u > b.limit {
		b.used.Add(-cost)
		b.refuse()
		return false
	}
	if u > b.peak.Load() {
		b.raisePeak(u)
	}
	return true
}

// raisePeak records u as the peak unless a higher one was recorded.
func (b *Budget) raisePeak(u int64) {
	for p := b.peak.Load(); u > p && !b.peak.CompareAndSwap(p, u); p = b.peak.Load() {
	}
}

// Release returns cost bytes taken with Reserve.
func (b *Budget) Release(cost int64) {
	if b != nil && cost != 0 {
		b.used.Add(-cost)
	}
}

// Admits reports whether cost bytes would fit now, without taking them:
// a cheap early check before the work of admitting a request begins.
func (b *Budget) Admits(cost int64) bool {
	if b == nil || b.used.Load()+cost <= b.limit {
		return true
	}
	b.refuse()
	return false
}

// refuse records a refusal: the node counts as overloaded for
// overloadHold.
func (b *Budget) refuse() {
	if b == nil {
		return
	}
	b.refused.Add(1)
	if t := b.now().UnixNano(); t > b.lastRef.Load() {
		b.lastRef.Store(t)
	}
}

// Err is the error a refusal answers with (it wraps ErrOverloaded).
func (b *Budget) Err() error { return errBudget }

// Limit, Used and Refused report the budget's size, what is in use and
// how many requests were refused so far.
func (b *Budget) Limit() int64   { return b.limit }
func (b *Budget) Used() int64    { return b.used.Load() }
func (b *Budget) Refused() int64 { return b.refused.Load() }

// TakePeak returns the highest use since the last call and restarts it
// at the current use.
func (b *Budget) TakePeak() int64 {
	return b.peak.Swap(b.used.Load())
}

// overloadHold is how long a node counts as overloaded after its last
// refusal: readiness probes come every few seconds, and a node refusing
// requests in bursts (every second's end) must not flap between them.
const overloadHold = time.Second

// Overloaded says why the node is overloaded: it refused a request less
// than overloadHold ago, or more than 90 % of the budget is in use. It
// returns nil otherwise.
func (b *Budget) Overloaded() error {
	if b == nil {
		return nil
	}
	used := b.used.Load()
	last := b.lastRef.Load()
	if last != 0 && b.now().Sub(time.Unix(0, last)) < overloadHold {
		return fmt.Errorf("overloaded: refusing requests (%d refused so far), waiting requests hold %d of %d MiB", b.refused.Load(), used>>20, b.limit>>20)
	}
	if used > b.limit/10*9 {
		return fmt.Errorf("overloaded: waiting requests hold %d of %d MiB", used>>20, b.limit>>20)
	}
	return nil
}
