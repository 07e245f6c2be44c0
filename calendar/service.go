package calendar

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/tempel-ksi/tempel/internal/round"
	"github.com/tempel-ksi/tempel/ksi"
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
	// a slot still waits for its grace.
	CloseEarly bool
	// Now is the clock (default time.Now). Only the calendar decides time.
	Now     func() time.Time
	Logger  *slog.Logger
	Metrics *Metrics
}

// Errors of the service.
var (
	ErrOverloaded = errors.New("calendar: too many submissions this second")
	ErrStopped    = errors.New("calendar: service stopped")
	ErrNotReady   = errors.New("calendar: not ready")
)

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

	mu         sync.Mutex
	lastClosed uint64 // last second appended (or, for a new calendar, the one before it starts)
	pending    map[uint64][]*submission
	holds      map[uint64]int // reserved slots not yet used or released, by second
	taken      uint64         // newest second whose submissions closeDue has taken
	lastSlot   uint64         // with CloseEarly: newest second with a slot reserved after its end
	abandoned  uint64         // with CloseEarly: newest second with a slot released unused
	stopped    bool
	failure    error // permanent: answered history would be in doubt
	fault      error // transient: the second loop retries (disk full, a write failed)
	faultSince time.Time
	clockLate  bool          // the clock was behind the calendar at the last look (for logging once)
	wake       chan struct{} // a hold ended: the second loop looks again
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
		cfg.Grace = 50 * time.Millisecond
	}
	if cfg.MaxPerSecond == 0 {
		cfg.MaxPerSecond = 100_000
	}
	if cfg.MaxHold == 0 {
		cfg.MaxHold = 500 * time.Millisecond
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Service{cfg: cfg, log: cfg.Logger, pending: make(map[uint64][]*submission), holds: make(map[uint64]int),
		wake: make(chan struct{}, 1)}
	if _, last, ok := cfg.Store.Head(); ok {
		s.lastClosed = last
	} else {
		// A new calendar starts with the second in progress.
		s.lastClosed = uint64(cfg.Now().Add(-cfg.Grace).Unix()) - 1
	}
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

// Reserve holds a slot in the second that is open now.
func (s *Service) Reserve() *Slot {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.cfg.Now()
	sec := s.openSecond(now)
	s.holds[sec]++
	if s.cfg.CloseEarly && !now.Before(secondEnd(sec)) {
		s.lastSlot = max(s.lastSlot, sec)
	}
	return &Slot{s: s, sec: sec}
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
	if !sl.released {
		s.abandoned = max(s.abandoned, sl.sec)
	}
	sl.releaseLocked()
	s.mu.Unlock()
}

func (sl *Slot) releaseLocked() {
	if sl.released {
		return
	}
	sl.released = true
	s := sl.s
	if s.holds[sl.sec]--; s.holds[sl.sec] <= 0 {
		delete(s.holds, sl.sec)
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
	if level >= 0xFF {
		return nil, fmt.Errorf("calendar: level %d leaves no room for the top tree", level)
	}
	reqTime := uint64(s.cfg.Now().UnixMicro())
	meta, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: clientID, RequestTime: &reqTime})
	if err != nil {
		return nil, err
	}
	sub := &submission{req: round.Request{Hash: hash, Level: level, Meta: meta}, reply: make(chan result, 1)}
	s.mu.Lock()
	if err := s.readyLocked(); err != nil {
		s.mu.Unlock()
		return nil, err
	}
	sec := s.openSecond(s.cfg.Now())
	if slot != nil && slot.sec > s.lastClosed && slot.sec > s.taken {
		sec = slot.sec
	}
	if len(s.pending[sec]) >= s.cfg.MaxPerSecond {
		s.mu.Unlock()
		return nil, ErrOverloaded
	}
	s.pending[sec] = append(s.pending[sec], sub)
	if slot != nil {
		slot.releaseLocked()
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
	if behind := s.clockBehindLocked(s.cfg.Now()); behind > maxClockBehind {
		add(fmt.Errorf("waiting for the clock (%d s behind the calendar's last second)", int64((behind+time.Second-1)/time.Second)))
	}
	if len(why) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrNotReady, strings.Join(why, "; "))
}

// clockBehindLocked is how far the clock is behind the end of the last
// closed second (0 when it is not): after a step back, the calendar waits
// for the clock rather than append a second again.
func (s *Service) clockBehindLocked(now time.Time) time.Duration {
	return max(0, secondEnd(s.lastClosed).Sub(now))
}

// openSecond returns the second a submission arriving now belongs to: the
// current second (minus grace), or the next open one if that has closed.
func (s *Service) openSecond(now time.Time) uint64 {
	sec := uint64(now.Add(-s.cfg.Grace).Unix())
	// A second being closed (taken) is as closed as lastClosed.
	if floor := max(s.lastClosed, s.taken); sec <= floor {
		sec = floor + 1
	}
	return sec
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
	behind := s.clockBehindLocked(s.cfg.Now())
	late := behind > maxClockBehind
	changed := late != s.clockLate
	s.clockLate = late
	last := s.lastClosed
	s.mu.Unlock()
	switch {
	case changed && late:
		s.log.Error("the clock is behind the calendar's last second; refusing submissions until it catches up",
			"behind", behind.Round(time.Millisecond), "last_second", last)
	case changed:
		s.log.Info("the clock has caught up with the calendar", "last_second", last)
	}
}

// secondEnd is when second t ends.
func secondEnd(t uint64) time.Time { return time.Unix(int64(t)+1, 0) }

// closeAt is when second t may be closed: after its grace period and,
// while slots in it are held, MaxHold after it ends at the latest; with
// CloseEarly, as soon as it has ended once its last slot is used.
func (s *Service) closeAtLocked(t uint64) time.Time {
	end := secondEnd(t)
	switch {
	case s.holds[t] > 0:
		return end.Add(max(s.cfg.MaxHold, s.cfg.Grace))
	case s.cfg.CloseEarly && s.lastSlot >= t && s.abandoned < t:
		return end
	}
	return end.Add(s.cfg.Grace)
}

// untilNextClose is the wait until the next second can be closed. If the
// clock stepped back the wait is longer: the calendar never goes back.
func (s *Service) untilNextClose() time.Duration {
	s.mu.Lock()
	due := s.closeAtLocked(s.lastClosed + 1)
	s.mu.Unlock()
	d := due.Sub(s.cfg.Now())
	return min(max(d, time.Millisecond), 2*time.Second)
}

// closeDue closes every second whose end (plus grace) has passed.
func (s *Service) closeDue() error {
	for {
		now := s.cfg.Now()
		s.mu.Lock()
		next := s.lastClosed + 1
		if now.Before(s.closeAtLocked(next)) {
			s.mu.Unlock()
			return nil
		}
		next = s.skipIdleLocked(next, now)
		subs := s.pending[next]
		delete(s.pending, next)
		s.taken = next // from now on, a slot in next submits to a later second
		// Slots still held now are used in the next open second.
		delete(s.holds, next)
		s.mu.Unlock()
		if err := s.closeSecond(next, subs); err != nil {
			return err
		}
	}
}

// skipIdleLocked returns the second to close from next (which is due)
// on: the seconds without submissions or held slots before a later one
// that is due by its grace period are left out, and closeSecond fills
// them with empty leaves together with it. So a calendar that was down
// or stopped on a fault catches up in a few writes, not two synced
// writes (leaf and watermark) per missed second.
func (s *Service) skipIdleLocked(next uint64, now time.Time) uint64 {
	// The newest second whose grace period has passed.
	cur := uint64(now.Add(-s.cfg.Grace).Unix())
	if cur < 2 || cur-1 <= next {
		return next
	}
	to := cur - 1
	for k := range s.pending {
		if k >= next && k < to {
			to = k
		}
	}
	for k := range s.holds {
		if k > next && k-1 < to {
			to = k - 1
		} else if k == next {
			return next
		}
	}
	return to
}

// closeSecond appends leaf t (filling any missed seconds with empty
// leaves) and answers the second's submissions once the leaf is synced.
func (s *Service) closeSecond(t uint64, subs []*submission) error {
	start := s.cfg.Now()
	leaf := EmptyLeaf
	var r *round.Round
	if len(subs) > 0 {
		reqs := make([]round.Request, len(subs))
		for i, sub := range subs {
			reqs[i] = sub.req
		}
		var err error
		if r, err = round.Build(calendarAlg, reqs); err != nil {
			s.answerAll(subs, nil, err)
			r, subs = nil, nil // answered: the paths below must not answer again
		} else {
			leaf, _ = r.Root()
		}
	}
	st := s.cfg.Store
	from := t
	if _, last, ok := st.Head(); ok && last+1 < t {
		// Seconds missed while down (or skipped) become empty leaves.
		from = last + 1
	} else if ok && last >= t {
		// Already in the store (a restart within the same second).
		s.answerAll(subs, nil, fmt.Errorf("calendar: second %d was already closed", t))
		s.setClosed(t)
		return nil
	}
	root, err := appendFilled(st, from, t, leaf)
	if err != nil {
		s.answerAll(subs, nil, err)
		return err
	}
	if from < t {
		// Logged once done: a fault retried every second logs once.
		s.log.Info("filled missed seconds with empty leaves", "from", from, "to", t-1)
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
	s.cfg.Metrics.appended(int(t-from+1), s.cfg.Now().Sub(start))
	s.log.Debug("closed second", "t", t, "submissions", len(subs), "late_by", start.Sub(secondEnd(t).Add(s.cfg.Grace)))
	if r == nil {
		return nil
	}
	sigs, err := s.sign(t, r)
	if err != nil {
		s.answerAll(subs, nil, err)
		return nil // the calendar is intact; only this second's answers failed
	}
	for i, sub := range subs {
		sub.reply <- result{sig: sigs[i]}
	}
	s.cfg.Metrics.issued(len(subs))
	return nil
}

// fillChunk bounds the leaves of one synced batch, and so the memory a
// long gap (a server down for months) takes to fill.
const fillChunk = 1 << 16

// appendFilled appends empty leaves for seconds from..t-1 and leaf for
// second t, in synced batches of at most fillChunk leaves, and returns the
// root after t.
func appendFilled(st *Store, from, t uint64, leaf ksi.Imprint) (ksi.Imprint, error) {
	buf := make([]ksi.Imprint, 0, min(t-from+1, fillChunk))
	var root ksi.Imprint
	for from <= t {
		buf = buf[:0]
		for s := from; s < t && len(buf) < fillChunk; s++ {
			buf = append(buf, EmptyLeaf)
		}
		if len(buf) < fillChunk {
			buf = append(buf, leaf)
		}
		var err error
		if root, err = st.AppendRange(from, buf, true); err != nil {
			return nil, err
		}
		from += uint64(len(buf))
	}
	return root, nil
}

func (s *Service) setClosed(t uint64) {
	s.mu.Lock()
	if t > s.lastClosed {
		s.lastClosed = t
	}
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
