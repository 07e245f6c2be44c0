package calendarstep

import (
	"errors"
	"fmt"
	"iter"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// ErrClosed is returned for a second at or before the last appended
// one: the calendar never appends a second twice. A replica applying a
// log entry that was committed twice treats it as a no-op.
var ErrClosed = errors.New("calendarstep: second already closed")

// Step is second t closed on a calendar state: what will be appended,
// and the top tree of its roots. Its [Step.Batches] compute the nodes.
type Step struct {
	// T is the second closed.
	T uint64
	// From is the first second the step appends: the one after the last
	// appended, or T itself. Seconds From..T-1 get the empty leaf: no
	// roots reached the calendar for them (it was down, or they were
	// skipped).
	From uint64
	// Leaf is leaf T: the root of Round, or the empty leaf.
	Leaf ksi.Imprint
	// Round is the top tree over the roots, in the order given; nil for
	// a second without roots.
	Round *round.Round

	prev calendartree.State
}

// Second closes second t on the calendar s with the roots submitted for
// it. Every root must be an imprint of [calendartree.Alg]; the metadata
// in each request is the element the calendar puts above that root. The
// same s, t and roots give the same Step on every machine.
func Second(s calendartree.State, t uint64, roots []round.Request) (Step, error) {
	from := t
	if !s.Empty() {
		if t <= s.Last() {
			return Step{}, fmt.Errorf("%w: second %d, last appended %d", ErrClosed, t, s.Last())
		}
		from = s.Last() + 1
	}
	if t > calendartree.MaxSecond {
		return Step{}, fmt.Errorf("%w: second %d", calendartree.ErrRange, t)
	}
	st := Step{T: t, From: from, Leaf: calendartree.EmptyLeaf(), prev: s}
	if len(roots) == 0 {
		return st, nil
	}
	for i, r := range roots {
		if len(r.Hash) != 1+calendartree.Alg.Size() || r.Hash.Alg() != calendartree.Alg {
			return Step{}, fmt.Errorf("%w: root %d of second %d", calendartree.ErrBadLeaf, i, t)
		}
	}
	r, err := round.Build(calendartree.Alg, roots)
	if err != nil {
		return Step{}, fmt.Errorf("calendarstep: second %d: %w", t, err)
	}
	st.Round = r
	st.Leaf, _ = r.Root()
	return st, nil
}

// Leaves returns how many leaves the step appends: T-From+1.
func (st Step) Leaves() uint64 { return st.T - st.From + 1 }

// Batch is one part of a step: the nodes to store, and the calendar's
// state once they are stored.
type Batch struct {
	// T0 and Last are the first and last second the batch appends.
	T0, Last uint64
	// Nodes are every leaf and completed node, in order.
	Nodes []calendartree.Node
	// State is the calendar after Last.
	State calendartree.State
}

// Batches yields the step's appends in batches of at most maxLeaves
// leaves (at least one), the last ending with leaf T. A long gap (a
// calendar down for months) so takes bounded memory; a second that
// follows the last appended one is one batch. Each batch builds on the
// state of the one before; a caller that stops storing stops iterating.
func (st Step) Batches(maxLeaves int) iter.Seq2[Batch, error] {
	maxLeaves = max(maxLeaves, 1)
	return func(yield func(Batch, error) bool) {
		s := st.prev
		buf := make([]ksi.Imprint, 0, min(st.Leaves(), uint64(maxLeaves)))
		for t0 := st.From; t0 <= st.T; {
			buf = buf[:0]
			for t := t0; t <= st.T && len(buf) < maxLeaves; t++ {
				if t == st.T {
					buf = append(buf, st.Leaf)
				} else {
					buf = append(buf, empty)
				}
			}
			next, nodes, err := calendartree.Append(s, t0, buf)
			if err != nil {
				yield(Batch{}, err)
				return
			}
			last := t0 + uint64(len(buf)) - 1
			if !yield(Batch{T0: t0, Last: last, Nodes: nodes, State: next}, nil) {
				return
			}
			s, t0 = next, last+1
		}
	}
}

// empty is shared by every filled second: calendartree.Append copies
// leaves into the nodes it returns.
var empty = calendartree.EmptyLeaf()
