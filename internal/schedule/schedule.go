// Package schedule decides when a calendar second closes, and so when
// every part of a signing node that works to the second's rhythm acts:
// the calendar's second loop, the aggregator's round timer and the
// garbage-collection gate follow it instead of computing second
// boundaries on their own.
//
// # The rule
//
// Second t is the interval [t, t+1) of Unix time. A submission arriving
// at now belongs to the open second: the second now-Grace falls in, or
// the one after the newest second closed or being closed, whichever is
// later (the calendar never goes back, even when the clock does).
//
// Second t closes (is appended as leaf t) at [CloseAt]:
//
//   - End(t)+Grace, for requests in flight at the boundary;
//   - while slots reserved in t are held (an in-process aggregator's
//     round that closed in t and is still building its tree), at
//     End(t)+max(MaxHold, Grace) at the latest;
//   - with CloseEarly, at End(t) once a slot reserved after t ended has
//     been used and no slot of t was released unused: that slot was
//     the second's last root.
//
// Seconds without submissions or holds before a due one are closed with
// it, as empty leaves ([State.Next]): a calendar that was down catches
// up in a few writes.
//
// [State] is the calendar's bookkeeping of holds and closed seconds; it
// does no I/O, takes the time as an argument and needs its owner's lock.
// The scenario tests in testdata/*.txt walk it step by step.
package schedule

import (
	"iter"
	"time"
)

// Rules are the settings of the schedule.
type Rules struct {
	// Grace is how long after a second ends its submissions are still
	// taken.
	Grace time.Duration
	// MaxHold bounds how long after its end a second waits for held
	// slots.
	MaxHold time.Duration
	// CloseEarly says that every root comes through slots of in-process
	// aggregators whose rounds end on second boundaries: a slot reserved
	// once a second has ended is its last.
	CloseEarly bool
}

// Defaults of the rules.
const (
	// RemoteGrace covers remote aggregators' rounds in transit.
	RemoteGrace = 50 * time.Millisecond
	// LocalGrace is the grace when every root reaches the calendar
	// through in-process aggregators, whose rounds reserve their place in
	// the second as they close: it only has to cover a round timer firing
	// late.
	LocalGrace = 20 * time.Millisecond
	// DefaultMaxHold bounds the wait for held slots.
	DefaultMaxHold = 500 * time.Millisecond
)

// Defaults returns the rules of a calendar whose roots all come through
// slots of in-process aggregators (local: `tempel serve --role all`,
// which closes seconds early) or not.
func Defaults(local bool) Rules {
	if local {
		return Rules{Grace: LocalGrace, MaxHold: DefaultMaxHold, CloseEarly: true}
	}
	return Rules{Grace: RemoteGrace, MaxHold: DefaultMaxHold}
}

// End is when second t ends.
func End(t uint64) time.Time { return time.Unix(int64(t)+1, 0) }

// NextEnd is the end of the second in progress at now.
func NextEnd(now time.Time) time.Time { return now.Truncate(time.Second).Add(time.Second) }

// Current is the newest second whose grace period has not passed at now.
func (r Rules) Current(now time.Time) uint64 { return uint64(now.Add(-r.Grace).Unix()) }

// Holds is what the schedule knows of the slots of one second.
type Holds struct {
	// Held counts the slots reserved in the second and not yet used or
	// released.
	Held int
	// LastUsed: with CloseEarly, a slot reserved after the second ended
	// (in it or a later one) has been taken.
	LastUsed bool
	// Abandoned: a slot in the second (or a later one) was released
	// unused; its root may still come without a slot.
	Abandoned bool
}

// CloseAt is when second t may close, given its holds. It is the one
// rule of the schedule; everything else in this package keeps its
// inputs.
func CloseAt(r Rules, t uint64, h Holds) time.Time {
	end := End(t)
	switch {
	case h.Held > 0:
		return end.Add(max(r.MaxHold, r.Grace))
	case r.CloseEarly && h.LastUsed && !h.Abandoned:
		return end
	}
	return end.Add(r.Grace)
}

// NextRound is when the round after the one due at next closes, for rounds
// of period p closing on multiples of p on the wall clock: when p divides
// a second, a second's last round closes right as the second ends. After
// a stall or a step of the clock either way, rounds start again from the
// next boundary after now, so that a step back never holds rounds for the
// length of the step.
func NextRound(now, next time.Time, p time.Duration) time.Time {
	next = next.Add(p)
	if !next.After(now) || next.Sub(now) > p {
		next = FirstRound(now, p)
	}
	return next
}

// FirstRound is when the first round of period p started at now closes.
func FirstRound(now time.Time, p time.Duration) time.Time { return now.Truncate(p).Add(p) }

// RoundsIn is how many rounds of period p fit in d.
func RoundsIn(d, p time.Duration) int { return int(d / p) }

// State is the calendar's bookkeeping of the schedule: the last closed
// second, the one being closed, and the slots held. Its owner serialises
// access.
type State struct {
	Rules
	last      uint64         // last second closed
	taken     uint64         // newest second taken for closing
	holds     map[uint64]int // slots held, by second
	lastSlot  uint64         // with CloseEarly: newest second with a slot reserved after its end
	abandoned uint64         // newest second with a slot released unused
}

// New returns the state of a calendar whose last closed second is last.
func New(r Rules, last uint64) *State {
	return &State{Rules: r, last: last, holds: make(map[uint64]int)}
}

// Start is the last closed second of a new calendar started at now: it
// starts with the second in progress.
func (r Rules) Start(now time.Time) uint64 { return r.Current(now) - 1 }

// Last is the last closed second.
func (s *State) Last() uint64 { return s.last }

// Open is the second a submission arriving at now belongs to.
func (s *State) Open(now time.Time) uint64 {
	sec := s.Current(now)
	// A second being closed (taken) is as closed as the last one.
	if floor := max(s.last, s.taken); sec <= floor {
		sec = floor + 1
	}
	return sec
}

// Reserve holds a slot in the second open at now and returns it.
func (s *State) Reserve(now time.Time) uint64 {
	sec := s.Open(now)
	s.holds[sec]++
	if s.CloseEarly && !now.Before(End(sec)) {
		s.lastSlot = max(s.lastSlot, sec)
	}
	return sec
}

// Release ends a hold in sec; unused says its root did not come through
// it. It reports whether sec has no holds left (its closing may be due).
func (s *State) Release(sec uint64, unused bool) bool {
	if unused {
		s.abandoned = max(s.abandoned, sec)
	}
	if s.holds[sec]--; s.holds[sec] > 0 {
		return false
	}
	delete(s.holds, sec)
	return true
}

// SlotSecond is the second a root submitted at now through a slot of sec
// belongs to: sec while it is open, else the open second.
func (s *State) SlotSecond(sec uint64, now time.Time) uint64 {
	if sec > s.last && sec > s.taken {
		return sec
	}
	return s.Open(now)
}

// Holds returns the holds of second t.
func (s *State) Holds(t uint64) Holds {
	return Holds{Held: s.holds[t], LastUsed: s.lastSlot >= t, Abandoned: s.abandoned >= t}
}

// CloseAt is when the next second to close may close.
func (s *State) CloseAt() time.Time {
	t := s.last + 1
	return CloseAt(s.Rules, t, s.Holds(t))
}

// Wait is how long the second loop sleeps at now before it looks again:
// until the next second may close, at least a millisecond, at most two
// seconds (the clock may step meanwhile).
func (s *State) Wait(now time.Time) time.Duration {
	return min(max(s.CloseAt().Sub(now), time.Millisecond), 2*time.Second)
}

// Behind is how far the clock is behind the end of the last closed
// second at now (0 when it is not): after a step back the calendar waits
// for the clock rather than append a second again.
func (s *State) Behind(now time.Time) time.Duration {
	return max(0, End(s.last).Sub(now))
}

// Next returns the second to close at now, if one is due: the seconds
// without submissions (busy lists the seconds with some) or holds before
// a later one that is due by its grace period are left out, to be filled
// with empty leaves together with it.
func (s *State) Next(now time.Time, busy iter.Seq[uint64]) (uint64, bool) {
	next := s.last + 1
	if now.Before(s.CloseAt()) {
		return 0, false
	}
	cur := s.Current(now)
	if cur < 2 || cur-1 <= next {
		return next, true
	}
	to := cur - 1
	for k := range busy {
		if k >= next && k < to {
			to = k
		}
	}
	for k := range s.holds {
		if k > next && k-1 < to {
			to = k - 1
		} else if k == next {
			return next, true
		}
	}
	return to, true
}

// Take records that second t is being closed: submissions from now on go
// to a later second, and slots still held in t are used in the next open
// second.
func (s *State) Take(t uint64) {
	s.taken = t
	delete(s.holds, t)
}

// Closed records that second t has been appended.
func (s *State) Closed(t uint64) { s.last = max(s.last, t) }
