package calendar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math/bits"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tempel-ksi/tempel/internal/schedule"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendarstep"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// RootSigner signs calendar roots: the PKI signature of a calendar
// authentication record over the exact published-data bytes.
type RootSigner interface {
	SignCalendarRoot(publishedData []byte) (ksi.SignatureData, error)
}

// ServiceConfig configures the second loop.
type ServiceConfig struct {
	Store  *Store
	Signer RootSigner
	// Watermark, when set, records each second before its answers leave
	// the process (see watermark.go); the store must have been checked
	// against it (Store.CheckMark) before the service starts.
	Watermark *Watermark
	// Grace is how long after a second ends its submissions are still
	// taken, for requests in flight at the boundary (default 50ms).
	Grace time.Duration
	// MaxPerSecond bounds the submissions of one second (default 100,000).
	MaxPerSecond int
	// MaxHold bounds how long after its end a second waits for reserved
	// slots (Reserve) beyond the grace period (default 500ms).
	MaxHold time.Duration
	// CloseEarly says that every root comes through slots (Reserve) of
	// in-process aggregators whose rounds end on second boundaries, as
	// with `tempel serve --role all`: a slot reserved once a second has
	// ended is then that second's last, and the second closes as soon as
	// it is used instead of after the grace period. A second without such
	// a slot still waits for its grace. Grace, MaxHold and CloseEarly are
	// the rules of the second schedule (internal/schedule).
	CloseEarly bool
	// Now is the clock (default time.Now). Only the calendar decides time.
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *Metrics
	// Log, when set, makes the calendar a member of a replicated
	// calendar (replica.go): seconds are appended when the log applies
	// them, and only the leader takes roots.
	Log ReplicatedLog
	// CommitTimeout bounds the leader's wait for a second's entry to be
	// applied (default DefaultCommitTimeout).
	CommitTimeout time.Duration
}

// Errors of the service.
var (
	ErrOverloaded = errors.New("calendar: too many submissions this second")
	ErrStopped    = errors.New("calendar: service stopped")
	ErrNotReady   = errors.New("calendar: not ready")
	// ErrLevelTooHigh: a root whose level leaves no room for the
	// second's top tree above it (Service.MaxLevel).
	ErrLevelTooHigh = errors.New("calendar: root level too high")
)

// MaxLevel is the highest level of a root the service signs: above it sit
// the root's metadata link and the second's top tree of at most
// MaxPerSecond leaves, and a chain climbs at most 255 levels. A higher
// root would not fail alone: the whole second's tree could not be built.
func (s *Service) MaxLevel() byte {
	depth := 0
	if n := s.cfg.MaxPerSecond; n > 1 {
		depth = bits.Len(uint(n - 1))
	}
	return byte(max(0, 0xFF-1-depth))
}

// maxClockBehind is how far the clock may be behind the calendar's last
// second before submissions are refused instead of waiting for it: a
// small step back costs a request at most this much more.
const maxClockBehind = time.Second

// faultRetry is how often a calendar that stopped on a fault (a full
// disk, a failed write) tries again.
const faultRetry = time.Second

// Service runs the second loop: roots submitted during second t are joined
// in a top tree whose root is appended as leaf t right after t ends; every
// submitter then gets the signature of its root.
type Service struct {
	cfg ServiceConfig
	log *slog.Logger

	mu sync.Mutex
	// sched decides when each second closes: the last second appended
	// (or, for a new calendar, the one before it starts), the one being
	// closed, the slots held.
	sched      *schedule.State
	pending    map[uint64][]*submission
	stopped    bool
	failure    error // permanent: answered history would be in doubt
	fault      error // transient: the second loop retries (disk full, a write failed)
	faultSince time.Time
	clockFault error                   // the clock is not trusted (clockfault.go)
	keyFault   error                   // the calendar key failed its last signature (keyfault.go)
	keyProbed  time.Time               // when the key was last tried
	clockLate  bool                    // the clock was behind the calendar at the last look (for logging once)
	wake       chan struct{}           // a hold ended: the second loop looks again
	proposals  map[uint64]chan applied // this member's proposals waiting to be applied, by id
	entryBytes map[uint64]int          // replicated: the encoded size of each pending second's roots
	following  bool                    // replicated: the last look found this member not leading

	// unflushed is what Apply did since the last Flush (replica.go); only
	// the log's goroutine touches it.
	unflushed unflushed
	publisher PublicationApplier // replicated: applies publication entries
}

type submission struct {
	req   round.Request
	reply chan result
}

type result struct {
	sig []byte
	err error
}

// NewService creates the second loop over an open store.
func NewService(cfg ServiceConfig) (*Service, error) {
	if cfg.Store == nil || cfg.Signer == nil {
		return nil, errors.New("calendar: service needs a store and a signer")
	}
	if cfg.Grace == 0 {
		cfg.Grace = schedule.RemoteGrace
	}
	if cfg.MaxPerSecond == 0 {
		cfg.MaxPerSecond = 100_000
	}
	if cfg.MaxHold == 0 {
		cfg.MaxHold = schedule.DefaultMaxHold
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CommitTimeout == 0 {
		cfg.CommitTimeout = DefaultCommitTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	rules := schedule.Rules{Grace: cfg.Grace, MaxHold: cfg.MaxHold, CloseEarly: cfg.CloseEarly}
	last := rules.Start(cfg.Now()) // a new calendar starts with the second in progress
	if _, l, ok := cfg.Store.Head(); ok {
		last = l
	}
	s := &Service{cfg: cfg, log: cfg.Logger, pending: make(map[uint64][]*submission), sched: schedule.New(rules, last),
		wake: make(chan struct{}, 1), proposals: make(map[uint64]chan applied), entryBytes: make(map[uint64]int)}
	return s, nil
}

// Store returns the service's store.
func (s *Service) Store() *Store { return s.cfg.Store }

// Ready returns nil when the calendar answers requests, or why it does not.
func (s *Service) Ready() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.readyLocked()
}

// Sign submits a root (an aggregator's round root at level) for the open
// second and waits for its signature: the complete KSI signature of hash,
// whose lowest aggregation chain is hash's path in the second's top tree,
// with clientID as the first step.
func (s *Service) Sign(ctx context.Context, hash ksi.Imprint, level byte, clientID string) ([]byte, error) {
	return s.submit(ctx, nil, hash, level, clientID)
}

// Slot is a place in the calendar's open second, reserved by an
// in-process aggregator when a round closes: the second is not closed
// until the slot is used (Sign) or released, or MaxHold after it ends.
// So a round that closes as a second ends reaches that second even when
// building its tree outlasts the grace period, instead of waiting a whole
// second more. Remote aggregators rely on the grace period alone.
type Slot struct {
	s        *Service
	sec      uint64
	released bool // guarded by s.mu
}

// OpenSecond is the second a root submitted at the given time would be
// appended in, as the calendar stands now.
func (s *Service) OpenSecond(at time.Time) uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sched.Open(at)
}

// Reserve holds a slot in the second that is open now.
func (s *Service) Reserve() *Slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	return &Slot{s: s, sec: s.sched.Reserve(s.cfg.Now())}
}

// Sign submits a root in the slot's second if it is still open (else in
// the open one), as Service.Sign does, and ends the hold.
func (sl *Slot) Sign(ctx context.Context, hash ksi.Imprint, level byte, clientID string) ([]byte, error) {
	return sl.s.submit(ctx, sl, hash, level, clientID)
}

// Release ends the hold without a submission; it may be called again.
// The root may still come later through Sign (an aggregator releases a
// slot while it waits to send), so its second no longer closes early.
func (sl *Slot) Release() {
	s := sl.s
	s.mu.Lock()
	sl.releaseLocked(true)
	s.mu.Unlock()
}

// releaseLocked ends the hold; unused says the root did not come with it.
func (sl *Slot) releaseLocked(unused bool) {
	if sl.released {
		return
	}
	sl.released = true
	s := sl.s
	if s.sched.Release(sl.sec, unused) {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

func (s *Service) submit(ctx context.Context, slot *Slot, hash ksi.Imprint, level byte, clientID string) ([]byte, error) {
	// Every way out ends the hold; a queued submission ends it at once.
	if slot != nil {
		defer slot.Release()
	}
	if hash.Alg() != calendarAlg || len(hash) != imprintLen {
		return nil, fmt.Errorf("calendar: root must be a SHA-256 imprint")
	}
	if level > s.MaxLevel() {
		return nil, fmt.Errorf("%w: level %d, at most %d leaves room for the second's top tree", ErrLevelTooHigh, level, s.MaxLevel())
	}
	reqTime := uint64(s.cfg.Now().UnixMicro())
	meta, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: clientID, RequestTime: &reqTime})
	if err != nil {
		return nil, err
	}
	sub := &submission{req: round.Request{Hash: hash, Level: level, Meta: meta}, reply: make(chan result, 1)}
	s.mu.Lock()
	if err := errors.Join(s.readyLocked(), s.notLeaderLocked()); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	now := s.cfg.Now()
	sec := s.sched.Open(now)
	if slot != nil {
		sec = s.sched.SlotSecond(slot.sec, now)
	}
	if len(s.pending[sec]) >= s.cfg.MaxPerSecond {
		s.mu.Unlock()
		return nil, ErrOverloaded
	}
	if s.cfg.Log != nil {
		// A replicated second is one log entry, whose size is bounded.
		if len(meta) > maxEntryMeta {
			s.mu.Unlock()
			return nil, fmt.Errorf("calendar: client id too long for a replicated calendar's log entry (%d bytes of metadata, at most %d)", len(meta), maxEntryMeta)
		}
		size := entryRootBytes(sub.req)
		if s.entryBytes[sec]+size > MaxEntryBytes {
			s.mu.Unlock()
			return nil, fmt.Errorf("%w: this second's log entry is full (%d bytes of roots)", ErrOverloaded, MaxEntryBytes)
		}
		s.entryBytes[sec] += size
	}
	s.pending[sec] = append(s.pending[sec], sub)
	if slot != nil {
		slot.releaseLocked(false)
	}
	s.mu.Unlock()
	s.cfg.Metrics.submitted()
	select {
	case r := <-sub.reply:
		return r.sig, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// Every reason is named, in one line: an operator who clears a full disk
// is not surprised next by a clock that was behind all along.
func (s *Service) readyLocked() error {
	if s.stopped {
		return ErrStopped
	}
	var why []string
	add := func(err error) {
		if err != nil && !slices.ContainsFunc(why, func(w string) bool { return strings.Contains(w, err.Error()) }) {
			why = append(why, err.Error())
		}
	}
	add(s.failure)
	add(s.fault)
	add(s.cfg.Store.Failed())
	add(s.clockFault)
	add(s.keyFault)
	if behind := s.sched.Behind(s.cfg.Now()); behind > maxClockBehind {
		add(fmt.Errorf("waiting for the clock (%d s behind the calendar's last second)", int64((behind+time.Second-1)/time.Second)))
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotReady, strings.Join(why, "; "))
}

// Run closes seconds as they end until ctx is cancelled; then it fails
// every pending submission and returns. A fault (a full disk, a failed
// watermark write) stops answering until the fault clears, which Run
// checks every faultRetry: the seconds missed meanwhile become empty
// leaves.
func (s *Service) Run(ctx context.Context) error {
	defer s.stop()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
		err, fatal := s.pass()
		if fatal != nil {
			return fatal
		}
		wait := s.untilNextClose()
		if err != nil {
			wait = faultRetry
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
		timer.Reset(wait)
	}
}

// pass is one look of the second loop: check the store, close
// the seconds that are due, record the outcome. err is a transient fault,
// fatal one that stops the calendar.
func (s *Service) pass() (err, fatal error) {
	err = s.storeUsable()
	if err == nil {
		err = s.closeDue()
	}
	fatal = s.setFault(err)
	s.watchClock()
	s.probeKey()
	return err, fatal
}

// storeUsable reports a store stopped by a write failure inside Pebble:
// its state is unknown until it is opened again, which a restart does
// (and the watermark check then catches anything lost). A full disk
// caught by the free-space reserve never gets here: nothing was written.
func (s *Service) storeUsable() error {
	if err := s.cfg.Store.Failed(); err != nil {
		return fmt.Errorf("%w after a write failure (%v): restart the server to reopen it", ErrFailed, err)
	}
	return nil
}

// setFault records the outcome of a pass of the second loop, logging
// only when the state changes. It returns an error when the calendar must
// stop for good: answered history is missing.
func (s *Service) setFault(err error) error {
	s.mu.Lock()
	prev, since := s.fault, s.faultSince
	switch {
	case err == nil:
		s.fault = nil
	case errors.Is(err, ErrHistoryLost):
		s.failure = err
	default:
		s.fault = err
		if prev == nil {
			s.faultSince = s.cfg.Now()
		}
	}
	s.mu.Unlock()
	switch {
	case err != nil && errors.Is(err, ErrHistoryLost):
		s.log.Error("calendar stopped for good", "err", err)
		s.failAll(err)
		return err
	case err != nil && (prev == nil || faultKind(prev) != faultKind(err)):
		s.log.Error("calendar stopped answering; retrying every second", "err", err)
		s.failAll(fmt.Errorf("%w: %v", ErrNotReady, err))
	case err == nil && prev != nil:
		s.log.Info("calendar answering again", "stopped_for", s.cfg.Now().Sub(since).Round(time.Millisecond), "after", prev.Error())
	}
	return nil
}

// faultKind names a fault for logging once per kind: the message of a
// full disk changes with every byte freed.
func faultKind(err error) string {
	for _, k := range []error{ErrDiskFull, ErrFailed, ErrCorrupt, ErrWatermarkDamaged} {
		if errors.Is(err, k) {
			return k.Error()
		}
	}
	return err.Error()
}

// watchClock logs when the clock falls behind the calendar and when it
// has caught up.
func (s *Service) watchClock() {
	s.mu.Lock()
	behind := s.sched.Behind(s.cfg.Now())
	late := behind > maxClockBehind
	changed := late != s.clockLate
	s.clockLate = late
	last := s.sched.Last()
	s.mu.Unlock()
	switch {
	case changed && late:
		s.log.Error("the clock is behind the calendar's last second; refusing submissions until it catches up",
			"behind", behind.Round(time.Millisecond), "last_second", last)
	case changed:
		s.log.Info("the clock has caught up with the calendar", "last_second", last)
	}
}

// untilNextClose is the wait until the next second can be closed. If the
// clock stepped back the wait is longer: the calendar never goes back.
// A follower's seconds are closed by the leader's entries, so its next
// close is due from the end of each second until that entry is applied,
// and for good while there is no leader: it looks again only every
// followerPoll instead of every millisecond.
func (s *Service) untilNextClose() time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	wait := s.sched.Wait(s.cfg.Now())
	if s.following {
		wait = max(wait, followerPoll)
	}
	return wait
}

// followerPoll is how often a member that does not lead looks whether it
// has become the leader (a new leader closes the seconds due at most
// this late).
const followerPoll = 100 * time.Millisecond

// closeDue closes every second the schedule says is due, filling the idle
// seconds before it (schedule.State.Next).
func (s *Service) closeDue() error {
	for {
		now := s.cfg.Now()
		s.mu.Lock()
		err := s.notLeaderLocked()
		s.following = err != nil
		if err != nil {
			// A member that lost the lead fails what it had taken; the
			// new leader closes the seconds.
			s.mu.Unlock()
			s.failAll(err)
			return nil
		}
		if s.clockFault != nil {
			// The seconds due are read from a clock found untrusted: a
			// clock ahead would fill the calendar with seconds still to
			// come. None is closed until the clock is trusted again; the
			// seconds missed meanwhile then become empty leaves.
			s.mu.Unlock()
			return nil
		}
		next, ok := s.sched.Next(now, maps.Keys(s.pending))
		if !ok {
			s.mu.Unlock()
			return nil
		}
		subs := s.pending[next]
		delete(s.pending, next)
		delete(s.entryBytes, next)
		// From now on, a slot in next submits to a later second.
		s.sched.Take(next)
		s.mu.Unlock()
		closeSecond := s.closeSecond
		if s.cfg.Log != nil {
			closeSecond = s.proposeSecond
		}
		if err := closeSecond(next, subs); err != nil {
			return err
		}
	}
}

// closeSecond applies the state-machine step for second t
// (ksi/calendarstep: the top tree over the submitted roots, its root as
// leaf t, empty leaves for missed seconds before it) and answers the
// second's submissions once the leaf is synced.
func (s *Service) closeSecond(t uint64, subs []*submission) error {
	start := s.cfg.Now()
	st := s.cfg.Store
	reqs := make([]round.Request, len(subs))
	for i, sub := range subs {
		reqs[i] = sub.req
	}
	step, err := calendarstep.Second(st.State(), t, reqs)
	switch {
	case errors.Is(err, calendarstep.ErrClosed):
		// Already in the store (a restart within the same second).
		s.answerAll(subs, nil, fmt.Errorf("calendar: second %d was already closed", t))
		s.setClosed(t)
		return nil
	case err != nil && len(subs) > 0:
		// The roots cannot be built into a tree: their callers get the
		// error and the second closes empty, as one without roots.
		s.answerAll(subs, nil, err)
		subs = nil // answered: the paths below must not answer again
		step, err = calendarstep.Second(st.State(), t, nil)
	}
	if err != nil {
		return err
	}
	root, err := writeStep(st, step)
	if err != nil {
		s.answerAll(subs, nil, err)
		return err
	}
	if step.From < t {
		// Logged once done: a fault retried every second logs once.
		s.log.Info("filled missed seconds with empty leaves", "from", step.From, "to", t-1)
	}
	// The mark moves before any answer of t leaves: a store that later
	// opens without t is refused instead of signing t again.
	if w := s.cfg.Watermark; w != nil {
		if err := w.Answered(t, root); err != nil {
			s.answerAll(subs, nil, err)
			s.setClosed(t)
			return err
		}
	}
	s.setClosed(t)
	s.cfg.Metrics.appended(int(step.Leaves()), s.cfg.Now().Sub(start))
	s.log.Debug("closed second", "t", t, "submissions", len(subs), "late_by", start.Sub(schedule.End(t).Add(s.cfg.Grace)))
	s.answerStep(t, step, subs)
	return nil
}

// answerStep answers the submissions of second t, whose step is durable:
// each submitter's signature is cut from the step's top tree. A failure
// to sign fails only this second's answers; the calendar is intact.
func (s *Service) answerStep(t uint64, step calendarstep.Step, subs []*submission) {
	if step.Round == nil || len(subs) == 0 {
		return
	}
	if step.Round.Len() != len(subs) {
		s.answerAll(subs, nil, fmt.Errorf("calendar: second %d has %d roots for %d callers", t, step.Round.Len(), len(subs)))
		return
	}
	sigs, err := s.sign(t, step.Round)
	if err != nil {
		s.answerAll(subs, nil, err)
		return
	}
	for i, sub := range subs {
		sub.reply <- result{sig: sigs[i]}
	}
	s.cfg.Metrics.issued(len(subs))
}

// fillChunk bounds the leaves of one synced batch, and so the memory a
// long gap (a server down for months) takes to fill.
const fillChunk = 1 << 16

// writeStep stores the step's batches, each synced before the next is
// computed on it, and returns the root after step.T.
func writeStep(st *Store, step calendarstep.Step) (ksi.Imprint, error) {
	var root ksi.Imprint
	for b, err := range step.Batches(fillChunk) {
		if err != nil {
			return nil, err
		}
		if err := st.Write(b.State, b.Nodes, true); err != nil {
			return nil, err
		}
		root = b.State.Root()
	}
	return root, nil
}

func (s *Service) setClosed(t uint64) {
	s.mu.Lock()
	s.sched.Closed(t)
	s.mu.Unlock()
}

// sign makes the second's answers: the calendar chain from leaf t to the
// root R_t, the authentication record on (t, R_t), and each submitter's
// path in the top tree.
func (s *Service) sign(t uint64, r *round.Round) ([][]byte, error) {
	chain, err := s.cfg.Store.Chain(t, t)
	if err != nil {
		return nil, err
	}
	var h ksi.Hasher
	root, err := chain.Output(&h)
	if err != nil {
		return nil, err
	}
	pd := ksi.NewPublishedData(t, root)
	sd, err := s.cfg.Signer.SignCalendarRoot(pd.Raw)
	s.noteKey(err)
	if err != nil {
		return nil, fmt.Errorf("calendar: sign root of %d: %w", t, err)
	}
	ar, err := ksi.NewCalendarAuthRecord(pd, sd)
	if err != nil {
		return nil, err
	}
	ans := &round.Answer{AggregationTime: t, Elements: append(append(make([]byte, 0, len(chain.Raw)+len(ar.Raw)), chain.Raw...), ar.Raw...)}
	var w round.Writer
	out := make([][]byte, r.Len())
	for i := range out {
		if out[i], err = w.AppendSignature(nil, r, i, ans); err != nil {
			return nil, err
		}
	}
	return out, nil
}

func (s *Service) answerAll(subs []*submission, sig []byte, err error) {
	for _, sub := range subs {
		sub.reply <- result{sig: sig, err: err}
	}
}

func (s *Service) failAll(err error) {
	s.mu.Lock()
	all := s.pending
	s.pending = make(map[uint64][]*submission)
	clear(s.entryBytes)
	s.mu.Unlock()
	for _, subs := range all {
		s.answerAll(subs, nil, err)
	}
}

func (s *Service) stop() {
	s.mu.Lock()
	s.stopped = true
	s.mu.Unlock()
	s.failAll(ErrStopped)
}

// Head returns the calendar's first and last second and the root after
// the last, as far as the watermark holds them (see answeredHead).
func (s *Service) Head() (first, last uint64, root ksi.Imprint, err error) {
	first, last, ok := s.answeredHead()
	if !ok {
		return 0, 0, nil, ErrEmpty
	}
	root, err = s.cfg.Store.Root(last)
	return first, last, root, err
}

// answeredHead is the store's head cut at the watermark: a second
// appended but not yet marked could still be lost with the WAL's tail,
// so neither its root nor a chain to it may leave the process. ok is
// false until a second is marked.
func (s *Service) answeredHead() (first, last uint64, ok bool) {
	first, last, ok = s.cfg.Store.Head()
	if w := s.cfg.Watermark; ok && w != nil {
		m := w.Mark().Last
		if m < first {
			return first, 0, false
		}
		last = min(last, m)
	}
	return first, last, ok
}

// Extend returns the calendar chain from leaf aggrTime to the root after
// pubTime (0: the newest second) and the calendar's last second, both
// only as far as the watermark holds them.
func (s *Service) Extend(aggrTime, pubTime uint64) (*ksi.CalendarChain, uint64, error) {
	_, last, ok := s.answeredHead()
	if err := s.checkExtend(pubTime); err != nil {
		return nil, last, err
	}
	if !ok {
		return nil, 0, ErrEmpty
	}
	if pubTime == 0 {
		pubTime = last
	}
	if pubTime > last {
		return nil, last, fmt.Errorf("%w: %d > %d", ErrTimeTooNew, pubTime, last)
	}
	ch, err := s.cfg.Store.Chain(aggrTime, pubTime)
	s.cfg.Metrics.extended(err)
	return ch, last, err
}
