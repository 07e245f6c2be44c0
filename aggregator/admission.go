package aggregator

import (
	"fmt"
	"time"
)

// Admission of parked callers by latency.
//
// Why: the memory budget bounds what waiting callers hold, but a node
// can run out of CPU long before: a unary call costs some 30 µs of server
// CPU, and a node offered twice what it can sign would admit as many
// callers as the budget holds (tens of thousands more each second than
// it can answer), and every caller would wait seconds. Instead, when a
// round's oldest request is answered later than lateAfter, the node
// admits at most three quarters of that round's callers in each round
// that follows, and raises the cap by an eighth after each round that
// reached its cap and was answered in time. The node then answers about
// what it can and refuses the rest at once (ErrOverloaded). Streams are
// not capped: a streamed request costs a few µs, and their memory is in
// the budget.
const (
	// lateAfter is how long after its arrival a request may be answered
	// before its round counts as late, on top of the round period:
	// every request waits for its calendar second (up to 1 s) and then
	// for the answers of the requests before it.
	lateAfter = 1300 * time.Millisecond
	// minCallerCap keeps the cap from closing: some callers are
	// admitted in every round, so the node keeps learning.
	minCallerCap = 64
	noCallerCap  = int(^uint(0) >> 1)
)

// errLate is the refusal of a caller over the round's cap, made once.
var errLate = fmt.Errorf("%w: the node answers later than it should, try again shortly", ErrOverloaded)

// adjustCallerCap updates the callers' cap after a round was answered:
// waiters is how many callers the round had, age how long its oldest
// request waited. It is called from the rounds' goroutines.
func (e *Engine) adjustCallerCap(waiters int, capped bool, age time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case age > e.cfg.Period+lateAfter:
		// Rounds of one second are answered together: each late one
		// sets the cap from its own callers, so the cap does not
		// collapse when a whole second is late.
		c := max(minCallerCap, waiters*3/4)
		if c < e.callerCap {
			e.callerCap = c
			e.cfg.Metrics.callerCap(c)
		}
	case capped && e.callerCap != noCallerCap:
		e.callerCap += max(e.callerCap/8, minCallerCap/4)
		e.cfg.Metrics.callerCap(e.callerCap)
	}
}
