package aggregator

import (
	"sync/atomic"
	"time"

	"github.com/tempel-ksi/tempel/internal/schedule"
)

// turn is the time a round's waiting callers (gRPC Sign, KSI PDU) have
// to pick up their results before the next round's callers are woken.
//
// Why: when the calendar answers a second's rounds at once, tens of
// thousands of parked callers would become runnable together, and the
// scheduler would run the first round's callers (the requests that have
// waited longest, which set the tail latency) mixed with every later
// round's. Waking one round at a time sends the first round out first.
type turn struct {
	left atomic.Int64
	done chan struct{}
}

// maxTurn bounds a round's turn: a caller slow to pick up delays the
// rounds after it by at most this much each (k such rounds in a row add
// up; tempel_aggregator_turn_timeouts_total counts them).
const maxTurn = 200 * time.Millisecond

// turnFor is the turn of a round with n parked callers, nil without any.
func turnFor(n int) *turn {
	if n == 0 {
		return nil
	}
	t := &turn{done: make(chan struct{})}
	t.left.Store(int64(n))
	return t
}

func (t *turn) pickedUp() {
	if t != nil && t.left.Add(-1) == 0 {
		close(t.done)
	}
}

// wait waits until every caller has picked up, or max; it reports
// whether they all did.
func (t *turn) wait(max time.Duration) bool {
	timer := time.NewTimer(max)
	defer timer.Stop()
	select {
	case <-t.done:
		return true
	case <-timer.C:
		return false
	}
}

// turns is the engine's policy of answering rounds one turn at a time,
// and of telling the process (Config.Answering) while answers go out.
type turns struct {
	max       time.Duration // bounds each round's turn (maxTurn; tests change it)
	behindAt  int64         // rounds answering beyond which the engine is behind
	answering atomic.Int64  // rounds answered upstream and not yet done
	hook      func(bool)    // Config.Answering
	metrics   *Metrics
}

func newTurns(cfg Config) turns {
	return turns{max: maxTurn, behindAt: int64(schedule.RoundsIn(2*time.Second, cfg.Period)), hook: cfg.Answering, metrics: cfg.Metrics}
}

// begin records that upstream has answered a round; end that the round
// is done.
func (ts *turns) begin() {
	ts.answering.Add(1)
	if ts.hook != nil {
		ts.hook(true)
	}
}

func (ts *turns) end() {
	if ts.hook != nil {
		ts.hook(false)
	}
	ts.answering.Add(-1)
}

// take waits for t's callers to pick up, unless the engine is behind.
func (ts *turns) take(t *turn) {
	// No turns while the engine catches up (see behind).
	if t != nil && !ts.behind() && !t.wait(ts.max) {
		ts.metrics.turnTimedOut()
	}
}

// behind reports whether more than two seconds' worth of rounds have
// their upstream answers and wait to be answered: the engine is catching
// up (after a stall, say). Everyone is late then, and turns would only
// slow it: waking one round at a time, each waiting for its last callers
// while new requests keep the scheduler busy, drains a backlog more slowly
// than waking them all (docs/design/latency.md#answer-turns).
func (ts *turns) behind() bool { return ts.answering.Load() > ts.behindAt }
