package aggregator

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempel-ksi/tempel/internal/schedule"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// Upstream signs a round root: the calendar, or a parent aggregator
// through the signing API. It returns the complete signature of root.
type Upstream interface {
	Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error)
}

// Engine runs rounds: requests queue, a round closes every period, its
// tree is built, its root signed upstream, and its requests answered, in
// the order the rounds closed. How requests wait (waiter.go, caller.go),
// the turns of parked callers (turn.go) and the round's place upstream
// (slot.go) are policies of their own.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	queue   queue          // the next round's requests
	perUser map[string]int // the next round's requests by client (Quota)
	stopped bool
	nextID  uint64
	// Rounds are answered in the order they closed: lastAnswered is closed
	// when the newest round so far has been answered. When the calendar
	// answers a second's rounds at once, the earliest requests, which
	// have waited longest, get their signatures first.
	lastAnswered chan struct{}

	inflight    chan struct{} // a place per round waiting for upstream
	nextClose   atomic.Int64  // when the next round closes (Unix ns), 0 before Run
	wg          sync.WaitGroup
	turns       turns
	upstreamLog upstreamLog
	pdu         *PDUSigner
}

// queue is the requests of a round: the next one while they queue, a
// closed one on its way.
type queue struct {
	waiters []pending       // who asked, in arrival order
	reqs    []round.Request // what they asked, index for index with waiters
	kinds   kindCounts      // how the waiters wait
}

// NextClose is when the round that takes a request submitted now is due
// to close (now, before Run has started).
func (e *Engine) NextClose() time.Time {
	if ns := e.nextClose.Load(); ns != 0 {
		return time.Unix(0, ns)
	}
	return e.cfg.Now()
}

// Config returns the engine's configuration after defaults.
func (e *Engine) Config() Config { return e.cfg }

// Budget returns the node's budget for waiting requests.
func (e *Engine) Budget() *Budget { return e.cfg.Budget }

// Submit queues a request for the current round; cb is called once with
// its signature. Errors detected at once (bad hash, level, quota,
// overload) are returned and cb is not called. The caller accounts for
// the memory its request and answer hold (Budget, CostStreamed).
func (e *Engine) Submit(r Request, cb Callback) error { return e.submit(r, cb) }

// SubmitShared queues a request for its answer in the shared-round form
// (Leg): cb is called once, as soon as the round is built. Errors are as
// for Submit; the caller accounts for its memory (CostLeg).
func (e *Engine) SubmitShared(r Request, cb LegCallback) error { return e.submit(r, cb) }

// submit queues r for w.
func (e *Engine) submit(r Request, w waiter) error {
	now := e.cfg.Now()
	if r.Hash.Alg() != ksi.SHA2_256 || len(r.Hash) != 1+ksi.SHA2_256.Size() {
		if err := checkHash(r.Hash, now); err != nil {
			return err
		}
	}
	if limit := e.levelLimit(r); r.Level > limit {
		return fmt.Errorf("%w: level %d, maximum %d", ErrLevelTooHigh, r.Level, limit)
	}
	reqTime := uint64(now.UnixMicro())
	f := ksi.MetadataFields{ClientID: r.Identity.ClientID, MachineID: r.Identity.MachineID, RequestTime: &reqTime}
	if r.Identity.HasSequence {
		f.SequenceNumber = &r.Identity.Sequence
	}
	meta, err := ksi.AppendMetadataValue(nil, f)
	if err != nil {
		return fmt.Errorf("%w: identity: %v", ErrBadRequest, err)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	switch {
	case e.stopped:
		return ErrStopped
	case len(e.queue.reqs) >= e.cfg.MaxQueue:
		e.cfg.Metrics.rejected("overloaded")
		return ErrOverloaded
	case e.cfg.Quota > 0 && e.perUser[r.Identity.ClientID] >= e.cfg.Quota:
		e.cfg.Metrics.rejected("quota")
		return ErrOverQuota
	}
	if e.cfg.Quota > 0 {
		e.perUser[r.Identity.ClientID]++
	}
	q := &e.queue
	q.waiters = append(q.waiters, pending{w: w, arrived: now})
	q.reqs = append(q.reqs, round.Request{Hash: r.Hash, Level: r.Level, Meta: meta})
	q.kinds[w.kind()]++
	e.cfg.Metrics.queued(len(q.reqs))
	return nil
}

// QueueLen returns the number of requests waiting for the next round.
func (e *Engine) QueueLen() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.queue.reqs)
}

// Run closes a round every period until ctx is cancelled. On return every
// queued request has been answered or failed. Rounds close on the
// schedule's round boundaries (schedule.NextRound): when the period
// divides a second, the last round of each second closes right as the
// second ends and reaches the calendar within its grace.
func (e *Engine) Run(ctx context.Context) error {
	p := e.cfg.Period
	now := e.cfg.Now()
	next := schedule.FirstRound(now, p)
	e.nextClose.Store(next.UnixNano())
	t := time.NewTimer(next.Sub(now))
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			e.shutdown()
			return nil
		case <-t.C:
			e.CloseRound(ctx)
		}
		now := e.cfg.Now()
		next = schedule.NextRound(now, next, p)
		e.nextClose.Store(next.UnixNano())
		t.Reset(next.Sub(now))
	}
}

// shutdown stops taking requests, sends what is queued as a last round and
// waits for every round in flight to be answered.
func (e *Engine) shutdown() {
	e.mu.Lock()
	e.stopped = true
	e.mu.Unlock()
	// The last round gets the upstream timeout to finish.
	e.CloseRound(context.Background())
	e.wg.Wait()
}

// roundRun is one closed round on its way: its requests, and the channels
// that keep answers in round order.
type roundRun struct {
	id uint64
	queue
	prev     chan struct{} // closed when the previous round is answered; nil for the first
	answered chan struct{}
	slot     slot // the round's way upstream
}

// CloseRound takes the queued requests as one round and starts it: the
// tree is built and its root sent upstream on another goroutine, so a slow
// upstream never delays the next round.
func (e *Engine) CloseRound(ctx context.Context) {
	e.mu.Lock()
	q := e.queue
	n := len(q.reqs)
	if n == 0 {
		e.mu.Unlock()
		return
	}
	// The next round is probably about as large: size it once.
	e.queue = queue{waiters: make([]pending, 0, n), reqs: make([]round.Request, 0, n)}
	clear(e.perUser)
	rd := &roundRun{id: e.nextID, queue: q, prev: e.lastAnswered, answered: make(chan struct{})}
	e.nextID++
	e.lastAnswered = rd.answered
	e.wg.Add(1)
	e.mu.Unlock()
	// The round's place upstream, taken as it closes (outside e.mu:
	// Submit need not wait for the calendar's lock).
	rd.slot = reserve(e.cfg.Upstream)
	go func() {
		defer e.wg.Done()
		defer close(rd.answered)
		defer func() { rd.slot.release() }()
		select {
		case e.inflight <- struct{}{}:
		default:
			rd.slot.drop(e.cfg.Upstream)
			select {
			case e.inflight <- struct{}{}:
			case <-ctx.Done():
				rd.waitPrev()
				fail(q.waiters, ErrStopped)
				return
			}
		}
		e.runRound(ctx, rd)
	}()
}

// waitPrev waits until the previous round has been answered, so that
// rounds are answered (or failed) in the order they closed.
func (rd *roundRun) waitPrev() {
	if rd.prev != nil {
		<-rd.prev
	}
}

// runRound is the per-round work: build once, one upstream call, then one
// answer per request. It holds an in-flight place until upstream has
// answered, then waits for the previous round to be answered.
func (e *Engine) runRound(ctx context.Context, rd *roundRun) {
	q := rd.waiters
	start := e.cfg.Now()
	r, err := round.Build(ksi.SHA2_256, rd.reqs)
	if err != nil {
		rd.slot.release() // nothing to submit: do not hold the calendar's second
		<-e.inflight
		rd.waitPrev()
		fail(q, fmt.Errorf("%w: %v", ErrBadRequest, err))
		return
	}
	root, level := r.Root()
	type upAnswer struct {
		sig []byte
		err error
	}
	up := make(chan upAnswer, 1)
	go func() {
		uctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), e.cfg.UpstreamTimeout)
		defer cancel()
		sig, err := rd.slot.up.Sign(uctx, root, level) // a reserved slot ends with the submission
		up <- upAnswer{sig, err}
	}()
	// While upstream works, shared-round requests get their legs.
	sr := &SharedRound{ID: rd.id, Alg: r.Alg(), done: make(chan struct{})}
	if rd.kinds[kindLeg] > 0 {
		e.sendLegs(r, sr, q)
	}
	u := <-up
	<-e.inflight
	e.turns.begin()
	defer e.turns.end()
	rd.waitPrev()
	ans, err := e.checkUpstream(u.sig, u.err, root, level, len(q))
	if err != nil {
		failRound(q, sr, err)
		return
	}
	sr.Answer = ans
	t := turnFor(rd.kinds[kindParked])
	if rd.kinds[kindLeg] < len(q) {
		e.answer(r, ans, q, t)
	}
	close(sr.done)
	now := e.cfg.Now()
	e.cfg.Metrics.round(len(q), now.Sub(start), q, now)
	e.turns.take(t)
}

// fail hands every request of a round err instead of an answer.
func fail(q []pending, err error) {
	for i := range q {
		q[i].w.fail(err)
	}
}

// failRound fails a round whose shared-round requests have their legs:
// they learn it from the round, the others from their waiters.
func failRound(q []pending, sr *SharedRound, err error) {
	for i := range q {
		if q[i].w.kind() != kindLeg {
			q[i].w.fail(err)
		}
	}
	sr.Err = err
	close(sr.done)
}

// sendLegs gives each shared-round request its leg, spread over the cores.
func (e *Engine) sendLegs(r *round.Round, sr *SharedRound, q []pending) {
	e.eachRequest(q, func(wr *round.Writer, i int) {
		if w := q[i].w; w.kind() == kindLeg {
			leg, shape, err := wr.AppendLeg(nil, r, i)
			if err != nil {
				w.fail(err)
				return
			}
			w.leg(Leg{Leg: leg, Shape: shape, Round: sr})
		}
	})
}

// answer encodes the signature of every request not in the shared-round
// form and hands it over; t is the round's turn.
func (e *Engine) answer(r *round.Round, ans *round.Answer, q []pending, t *turn) {
	e.eachRequest(q, func(wr *round.Writer, i int) {
		if w := q[i].w; w.kind() != kindLeg {
			sig, err := wr.AppendSignature(nil, r, i, ans)
			w.signed(Signed{Signature: sig, AggregationTime: ans.AggregationTime, Err: err}, t)
		}
	})
}

// eachRequest runs f for every request of a round, spread over the cores,
// each worker with its own Writer.
func (e *Engine) eachRequest(q []pending, f func(wr *round.Writer, i int)) {
	workers := min(runtime.GOMAXPROCS(0), 1+len(q)/2048)
	var wg sync.WaitGroup
	per := (len(q) + workers - 1) / workers
	for w := 0; w < workers; w++ {
		lo, hi := w*per, min((w+1)*per, len(q))
		if lo >= hi {
			break
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			var wr round.Writer
			for i := lo; i < hi; i++ {
				f(&wr, i)
			}
		}()
	}
	wg.Wait()
}
