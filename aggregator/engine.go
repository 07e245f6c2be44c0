package aggregator

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempel-ksi/tempel/internal/round"
	"github.com/tempel-ksi/tempel/ksi"
)

// Upstream signs a round root: the calendar, or a parent aggregator
// through the signing API. It returns the complete signature of root.
type Upstream interface {
	Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error)
}

// SlotUpstream is an Upstream that can reserve, when a round closes, the
// round's place in the upstream's current period: the in-process
// calendar's second (calendar.Slot). The round's root then counts for the
// second the round closed in even when building the round outlasts the
// calendar's grace period, which would otherwise cost its requests a
// whole second more.
type SlotUpstream interface {
	Upstream
	// Reserve returns the Upstream to sign this round's root with and a
	// release function, called once the round is done with it.
	Reserve() (Upstream, func())
}

// Config configures an Engine.
type Config struct {
	Upstream Upstream
	// Period is the round length (default 100ms).
	Period time.Duration
	// MaxLevel is the highest request level accepted and advertised
	// (default DefaultMaxLevel). It must leave room above it for the
	// request's metadata, the round tree and upstream's trees within
	// the 255 levels of a chain (MaxLevelLimit).
	MaxLevel byte
	// MaxQueue bounds the requests waiting for a round (default 1,000,000).
	MaxQueue int
	// Budget bounds the memory of waiting requests across the node
	// (default: NewBudget(DefaultBudget)). Sign and the PDU handler
	// charge CostCaller per request; Submit's caller charges its own
	// requests (Engine.Budget).
	Budget *Budget
	// Quota limits one client's requests per round (0: no limit).
	Quota int
	// UpstreamTimeout bounds the wait for upstream (default 5s).
	UpstreamTimeout time.Duration
	// MaxInFlight bounds rounds waiting for upstream (default: two
	// seconds' worth of rounds plus four, at least 16).
	MaxInFlight int
	// Answering, if set, is called with true when upstream has answered
	// a round (the round may then still wait for earlier rounds to be
	// answered) and with false when the round is done: its waiting
	// callers have picked up their results, or its turn ran out (maxTurn),
	// or it failed. A process can hold off work, such as garbage
	// collection, while a second's answers go out. It is called from the
	// rounds' goroutines, concurrently, and must not block.
	Answering func(bool)
	Logger    *slog.Logger
	Metrics   *Metrics
	Now       func() time.Time
}

// DefaultMaxLevel is the default highest request level. The reference
// tools apply an advertised maximum as it is (`ksi sign
// --apply-remote-conf` sizes its local round for 2^max inputs): 20 keeps
// that at a million leaves, where 32 ran them out of memory.
const DefaultMaxLevel = 20

// Identity is who asked: it becomes the signature's metadata link.
type Identity struct {
	ClientID  string
	MachineID string
	// Sequence is the caller's request number, if known.
	Sequence    uint64
	HasSequence bool
}

// Request is one hash to sign.
type Request struct {
	Hash     ksi.Imprint
	Level    byte
	Identity Identity
	// Shared asks for the answer in the shared-round form, in two steps.
	// As soon as the round is built, the callback gets Result.Leg, Shape
	// and Round (or Err); the request is signed when Round.Done() is
	// closed with Round.Err nil, and round.AppendJoined then makes its
	// signature from Round.Answer. A stream sends the legs while the
	// calendar's second runs and each round's shared part once: when the
	// calendar answers, there is almost nothing left to send.
	Shared bool
}

// Errors callers map to protocol statuses.
var (
	ErrBadRequest   = errors.New("aggregator: bad request")
	ErrLevelTooHigh = errors.New("aggregator: request level above the maximum")
	ErrOverQuota    = errors.New("aggregator: over quota for this round")
	ErrOverloaded   = errors.New("aggregator: too many requests queued")
	ErrUpstream     = errors.New("aggregator: upstream error")
	ErrUpstreamTime = errors.New("aggregator: upstream timeout")
	ErrStopped      = errors.New("aggregator: stopped")
)

// Result is the outcome of one request.
type Result struct {
	Signature       []byte // the complete KSI signature (TLV 0x800)
	AggregationTime uint64
	// The shared-round form (Request.Shared): the request's own links and
	// chain shape (round.Writer.AppendLeg), and its round's shared part.
	Leg   []byte
	Shape uint64
	Round *SharedRound
	Err   error
	turn  *turn // the round's turn, for Sign's caller
}

// SharedRound is the part of a round's signatures that all its requests
// share: upstream's answer and the round's hash algorithm. Answer and Err
// are set before Done is closed; rounds are done in the order they closed.
type SharedRound struct {
	ID     uint64 // unique within the engine: senders send each round once
	Alg    ksi.HashAlg
	Answer *round.Answer
	Err    error // why the round failed, after Done
	done   chan struct{}
}

// Done is closed when the round has been answered or has failed.
func (r *SharedRound) Done() <-chan struct{} { return r.done }

// Callback receives a request's result. It runs on the engine's goroutine
// and must not block.
type Callback func(Result)

type pending struct {
	cb      Callback // nil when caller is set
	caller  *caller  // waits in caller.wait: its round's turn ends when it picks up
	arrived time.Time
	shared  bool
}

// hand gives the request its result.
func (p *pending) hand(res Result) {
	if p.caller != nil {
		p.caller.deliver(res)
	} else {
		p.cb(res)
	}
}

// Engine runs rounds.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	queue   []pending       // who asked, in arrival order
	shared  int             // how many of them asked for the shared-round form
	waiters int             // how many of them wait in caller.wait (not in the shared-round form)
	reqs    []round.Request // what they asked, index for index with queue
	perUser map[string]int
	stopped bool

	inflight chan struct{}
	wg       sync.WaitGroup
	// Rounds are answered in the order they closed: lastAnswered is closed
	// when the newest round so far has been answered. When the calendar
	// answers a second's rounds at once, the earliest requests, which
	// have waited longest, get their signatures first.
	lastAnswered chan struct{}
	nextRoundID  uint64
	maxTurn      time.Duration // bounds each round's turn (maxTurn; tests change it)
	answering    atomic.Int64  // rounds answered upstream and not yet done
	upstreamLog  upstreamLog
	pdu          *PDUSigner
}

// New creates an engine; call Run to start closing rounds.
func New(cfg Config) (*Engine, error) {
	if cfg.Upstream == nil {
		return nil, errors.New("aggregator: no upstream")
	}
	if cfg.Period <= 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.MaxLevel == 0 {
		cfg.MaxLevel = DefaultMaxLevel
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if limit := MaxLevelLimit(cfg.MaxQueue, cfg.Upstream); int(cfg.MaxLevel) > limit {
		return nil, fmt.Errorf("aggregator: max level %d leaves no room for the round tree and upstream's trees above it: at most %d with a queue of %d",
			cfg.MaxLevel, limit, cfg.MaxQueue)
	}
	if cfg.Budget == nil {
		cfg.Budget = NewBudget(DefaultBudget)
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 5 * time.Second
	}
	if cfg.MaxInFlight == 0 {
		// Rounds wait for upstream about a second (the calendar's second,
		// its grace, the hold of a late round): room for two seconds' worth.
		cfg.MaxInFlight = max(16, int(2*time.Second/cfg.Period)+4)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Round ids start at 1: 0 is "no round" on the wire.
	e := &Engine{cfg: cfg, log: cfg.Logger, perUser: make(map[string]int), inflight: make(chan struct{}, cfg.MaxInFlight), nextRoundID: 1, maxTurn: maxTurn}
	e.pdu = &PDUSigner{e: e}
	return e, nil
}

// Config returns the engine's configuration after defaults.
func (e *Engine) Config() Config { return e.cfg }

// Budget returns the node's budget for waiting requests.
func (e *Engine) Budget() *Budget { return e.cfg.Budget }

// Submit queues a request for the current round; cb is called once with
// the result. Errors detected at once (bad hash, level, quota, overload)
// are returned and cb is not called. The caller accounts for the memory
// its request and answer hold (Budget, CostStreamed).
func (e *Engine) Submit(r Request, cb Callback) error {
	return e.submit(r, pending{cb: cb})
}

// submit queues r for p (its cb or caller set).
func (e *Engine) submit(r Request, p pending) error {
	now := e.cfg.Now()
	if r.Hash.Alg() != ksi.SHA2_256 || len(r.Hash) != 1+ksi.SHA2_256.Size() {
		if err := checkHash(r.Hash, now); err != nil {
			return err
		}
	}
	if r.Level > e.cfg.MaxLevel {
		return fmt.Errorf("%w: level %d, maximum %d", ErrLevelTooHigh, r.Level, e.cfg.MaxLevel)
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
	case len(e.queue) >= e.cfg.MaxQueue:
		e.cfg.Metrics.rejected("overloaded")
		return ErrOverloaded
	case e.cfg.Quota > 0 && e.perUser[r.Identity.ClientID] >= e.cfg.Quota:
		e.cfg.Metrics.rejected("quota")
		return ErrOverQuota
	}
	if e.cfg.Quota > 0 {
		e.perUser[r.Identity.ClientID]++
	}
	p.arrived, p.shared = now, r.Shared
	e.queue = append(e.queue, p)
	if r.Shared {
		e.shared++
	} else if p.caller != nil {
		e.waiters++
	}
	e.reqs = append(e.reqs, round.Request{Hash: r.Hash, Level: r.Level, Meta: meta})
	e.cfg.Metrics.queued(len(e.queue))
	return nil
}

// checkHash checks a document hash other than SHA-256: a well-formed
// imprint of an algorithm that Tempel implements and that is neither
// deprecated nor obsolete now (ksi-spec §2). The round tree hashes with
// SHA-256 above it whatever its algorithm.
func checkHash(h ksi.Imprint, now time.Time) error {
	if _, err := ksi.ParseImprint(h); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := h.Alg().CheckSigning(uint64(max(now.Unix(), 0))); err != nil {
		return fmt.Errorf("%w: document hash: %w", ErrBadRequest, err)
	}
	return nil
}

// Sign submits a request and waits for its result.
func (e *Engine) Sign(ctx context.Context, r Request) Result {
	c, err := e.submitCaller(r)
	if err != nil {
		return Result{Err: err}
	}
	return c.wait(ctx)
}

// submitCaller submits a request whose result the caller will wait for
// with caller.wait, taking its part in its round's turn.
// It reserves CostCaller, which wait returns.
func (e *Engine) submitCaller(r Request) (*caller, error) {
	b := e.cfg.Budget
	if !b.Reserve(CostCaller) {
		e.cfg.Metrics.rejected("memory")
		return nil, errBudget
	}
	c := &caller{ch: make(chan Result, 1), budget: b}
	if err := e.submit(r, pending{caller: c}); err != nil {
		b.Release(CostCaller)
		return nil, err
	}
	return c, nil
}

// caller is one request whose caller is parked for its result.
type caller struct {
	ch     chan Result
	state  atomic.Int32 // callerWaiting, callerAnswered or callerGone
	budget *Budget      // holds CostCaller until wait returns
}

const (
	callerWaiting int32 = iota
	callerAnswered
	callerGone
)

// deliver hands the caller its result. A caller that has given up counts
// as picked up at once: its round must not wait for it.
func (c *caller) deliver(res Result) {
	if !c.state.CompareAndSwap(callerWaiting, callerAnswered) {
		res.turn.pickedUp()
		return
	}
	c.ch <- res
}

// wait waits for the result or for ctx, in a frame padded with 2 KiB.
//
// Why the pad: a server holds one goroutine per unary call parked here
// for up to a second, tens of thousands at a time, and the runtime starts
// each new goroutine with the average stack it found in use at the last
// GC (plus a guard, rounded up to a power of two). Parked without the
// pad, a gRPC handler uses just under 4 KiB, so handlers started with
// 4 KiB, and every one of them then outgrew it on the way here and
// copied its stack into 8 KiB: a tenth of the server's CPU per unary
// call. With the pad they start with 8 KiB (/gc/stack/starting-size:bytes)
// and never copy, and their stacks take no more memory than before.
//
//go:noinline
func (c *caller) wait(ctx context.Context) Result {
	var pad [2048]byte
	keepOnStack(pad[:])
	// The caller's stack and call are free once it returns (what stays in
	// its round until the round is done is far less).
	defer c.budget.Release(CostCaller)
	select {
	case x := <-c.ch:
		x.turn.pickedUp()
		x.turn = nil
		return x
	case <-ctx.Done():
		if c.state.CompareAndSwap(callerWaiting, callerGone) {
			return Result{Err: ctx.Err()}
		}
		// Answered meanwhile (the result is on its way into c.ch): take
		// it, so that its round's turn ends, and return it.
		x := <-c.ch
		x.turn.pickedUp()
		x.turn = nil
		return x
	}
}

// keepOnStack uses b so that the compiler keeps it (it does not escape).
//
//go:noinline
func keepOnStack(b []byte) { _ = b[len(b)-1] }

// QueueLen returns the number of requests waiting for the next round.
func (e *Engine) QueueLen() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.queue)
}

// Run closes a round every period until ctx is cancelled. On return every
// queued request has been answered or failed.
//
// Rounds close on multiples of the period on the wall clock, so that when
// the period divides a second, the last round of each second closes right
// as the second ends and reaches the calendar within its grace: no request
// waits for the calendar's next second because of the round's phase.
func (e *Engine) Run(ctx context.Context) error {
	p := e.cfg.Period
	now := e.cfg.Now()
	next := now.Truncate(p).Add(p)
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
		next = next.Add(p)
		// Fell behind (a stall, a step forward) or the clock stepped
		// back: start again from the next boundary, so that a step back
		// never holds rounds (and their callers) for the length of the step.
		if !next.After(now) || next.Sub(now) > p {
			next = now.Truncate(p).Add(p)
		}
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

// CloseRound takes the queued requests as one round and starts it: the
// tree is built and its root sent upstream on another goroutine, so a slow
// upstream never delays the next round.
func (e *Engine) CloseRound(ctx context.Context) {
	e.mu.Lock()
	q, reqs := e.queue, e.reqs
	if len(q) == 0 {
		e.mu.Unlock()
		return
	}
	// The next round is probably about as large: size it once.
	e.queue, e.reqs = make([]pending, 0, len(q)), make([]round.Request, 0, len(q))
	shared, waiters := e.shared, e.waiters
	e.shared, e.waiters = 0, 0
	clear(e.perUser)
	rd := &roundRun{id: e.nextRoundID, q: q, reqs: reqs, shared: shared, waiters: waiters, prev: e.lastAnswered, answered: make(chan struct{}), up: e.cfg.Upstream, release: func() {}}
	e.nextRoundID++
	e.lastAnswered = rd.answered
	e.wg.Add(1)
	e.mu.Unlock()
	// The round's place in the calendar's second, taken as it closes
	// (outside e.mu: Submit need not wait for the calendar's lock).
	if su, ok := e.cfg.Upstream.(SlotUpstream); ok {
		rd.up, rd.release = su.Reserve()
	}
	go func() {
		defer e.wg.Done()
		defer close(rd.answered)
		defer func() { rd.release() }()
		select {
		case e.inflight <- struct{}{}:
		default:
			// Too many rounds wait for upstream. A round that waits for a
			// place must not hold its calendar slot meanwhile: the rounds
			// holding the places may be waiting for that very second to
			// close. It takes its chances with the grace period instead.
			rd.release()
			rd.up, rd.release = e.cfg.Upstream, func() {}
			select {
			case e.inflight <- struct{}{}:
			case <-ctx.Done():
				rd.waitPrev()
				fail(q, ErrStopped)
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

// roundRun is one closed round on its way: its requests, and the channels
// that keep answers in round order.
type roundRun struct {
	id       uint64
	q        []pending
	reqs     []round.Request
	shared   int           // requests in the shared-round form
	waiters  int           // callers waiting in caller.wait (Sign, PDU) among the others
	prev     chan struct{} // closed when the previous round is answered; nil for the first
	answered chan struct{}
	up       Upstream // signs the root: Config.Upstream, or its reserved slot
	release  func()
}

func fail(q []pending, err error) {
	for i := range q {
		q[i].hand(Result{Err: err})
	}
}

// runRound is the per-round work: build once, one upstream call, then one
// signature per request. It holds an in-flight slot until upstream has
// answered, then waits for the previous round to be answered.
func (e *Engine) runRound(ctx context.Context, rd *roundRun) {
	q := rd.q
	start := e.cfg.Now()
	r, err := round.Build(ksi.SHA2_256, rd.reqs)
	if err != nil {
		rd.release() // nothing to submit: do not hold the calendar's second
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
		sig, err := rd.up.Sign(uctx, root, level) // a reserved slot ends with the submission
		up <- upAnswer{sig, err}
	}()
	// While upstream works, shared-round requests get their legs.
	sr := &SharedRound{ID: rd.id, Alg: r.Alg(), done: make(chan struct{})}
	if rd.shared > 0 {
		e.sendLegs(r, sr, q)
	}
	u := <-up
	<-e.inflight
	e.answering.Add(1)
	defer e.answering.Add(-1)
	if e.cfg.Answering != nil {
		e.cfg.Answering(true)
		defer e.cfg.Answering(false)
	}
	rd.waitPrev()
	if err = u.err; err != nil {
		e.cfg.Metrics.upstreamError()
		if errors.Is(err, context.DeadlineExceeded) {
			err = fmt.Errorf("%w: %v", ErrUpstreamTime, err)
		} else {
			err = fmt.Errorf("%w: %v", ErrUpstream, err)
		}
		e.upstreamLog.failed(e.log, err, len(q))
		failRound(q, sr, err)
		return
	}
	ans, err := answerOf(u.sig, root, level)
	if err != nil {
		e.cfg.Metrics.upstreamError()
		err = fmt.Errorf("%w: %v", ErrUpstream, err)
		e.upstreamLog.failed(e.log, err, len(q))
		failRound(q, sr, err)
		return
	}
	e.upstreamLog.ok(e.log)
	sr.Answer = ans
	var t *turn
	if rd.waiters > 0 {
		t = &turn{done: make(chan struct{})}
		t.left.Store(int64(rd.waiters))
	}
	if rd.shared < len(q) {
		e.answer(r, ans, q, t)
	}
	close(sr.done)
	now := e.cfg.Now()
	e.cfg.Metrics.round(len(q), now.Sub(start), q, now)
	// No turns while the engine catches up (see behind).
	if t != nil && !e.behind() && !t.wait(e.maxTurn) {
		e.cfg.Metrics.turnTimedOut()
	}
}

// behind reports whether more than two seconds' worth of rounds have
// their upstream answers and wait to be answered: the engine is catching
// up (after a stall, say). Everyone is late then, and turns would only
// slow it: waking one round at a time, each waiting for its last callers
// while new requests keep the scheduler busy, drained a 4 s stall's
// backlog at 40 k/s more slowly than waking them all.
func (e *Engine) behind() bool {
	return e.answering.Load() > int64(2*time.Second/e.cfg.Period)
}

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

// failRound fails a round whose shared-round requests have their legs:
// they learn it from the round, the others from their callbacks.
func failRound(q []pending, sr *SharedRound, err error) {
	for i := range q {
		if !q[i].shared {
			q[i].hand(Result{Err: err})
		}
	}
	sr.Err = err
	close(sr.done)
}

// sendLegs gives each shared-round request its leg, spread over the cores.
func (e *Engine) sendLegs(r *round.Round, sr *SharedRound, q []pending) {
	e.eachRequest(q, func(wr *round.Writer, i int) {
		if q[i].shared {
			leg, shape, err := wr.AppendLeg(nil, r, i)
			if err != nil {
				q[i].hand(Result{Err: err})
				return
			}
			q[i].hand(Result{Leg: leg, Shape: shape, Round: sr})
		}
	})
}

// answerOf checks upstream's signature is for our root and splits it.
func answerOf(sig []byte, root ksi.Imprint, level byte) (*round.Answer, error) {
	s, err := ksi.ParseSignature(sig)
	if err != nil {
		return nil, err
	}
	if !s.DocumentHash().Equal(root) {
		return nil, errors.New("upstream signed another hash")
	}
	return round.AnswerFromSignature(s, level)
}

// answer encodes the signature of every request not in the shared-round
// form and hands it over.
func (e *Engine) answer(r *round.Round, ans *round.Answer, q []pending, t *turn) {
	e.eachRequest(q, func(wr *round.Writer, i int) {
		if !q[i].shared {
			sig, err := wr.AppendSignature(nil, r, i, ans)
			res := Result{Signature: sig, AggregationTime: ans.AggregationTime, Err: err}
			if q[i].caller != nil {
				res.turn = t
			}
			q[i].hand(res)
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
