package calendar

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendarstep"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// A replicated calendar (ServiceConfig.Log set) does not append its
// seconds itself: the leader's schedule closes second t by proposing the
// entry for t (SecondEntry) to the log, and every member appends it when
// the log applies it (Service.Apply), through the same state-machine
// step. The leader answers the callers whose roots it proposed once the
// entry is committed and applied on its own store, and only if the entry
// applied for t is its own proposal
// (docs/design/replication.md#when-an-answer-may-leave).

// ReplicatedLog is the consensus log a calendar member proposes to
// (internal/raftnode behind an adapter).
type ReplicatedLog interface {
	// Propose hands an entry to the log; it returns before the entry is
	// committed, with an error when this member cannot propose.
	Propose(ctx context.Context, data []byte) error
	// Leading reports whether this member leads and has applied every
	// entry committed before its term, so its store holds every second
	// any member may have answered. Only then does its schedule close
	// seconds.
	Leading() bool
	// Leader names the current leader for a caller to go to ("" when
	// none is known).
	Leader() string
}

// ErrNotLeader: this member of a replicated calendar does not take
// roots; the error names the leader when one is known.
var ErrNotLeader = errors.New("calendar: not the cluster's leader")

// ErrNotCommitted: the entry for a second was not committed and applied
// in time (no quorum, or leadership changed): its callers may retry.
var ErrNotCommitted = errors.New("calendar: second not committed by the cluster")

// DefaultCommitTimeout is how long the leader waits for the entry of a
// second to be committed and applied before failing its callers.
const DefaultCommitTimeout = 3 * time.Second

// applied is what Apply tells the member that proposed an entry.
type applied struct {
	step calendarstep.Step
	err  error
}

// notLeaderLocked is why a follower refuses roots, nil on the leader.
func (s *Service) notLeaderLocked() error {
	l := s.cfg.Log
	if l == nil || l.Leading() {
		return nil
	}
	if name := l.Leader(); name != "" {
		return fmt.Errorf("%w: the leader is %s", ErrNotLeader, name)
	}
	return fmt.Errorf("%w: no leader (election in progress or no quorum)", ErrNotLeader)
}

// proposeSecond closes second t on a replicated calendar: it proposes
// the entry for t and, once this member has applied it, answers the
// second's submissions from the applied step. It returns an error only
// for a fault that stops the calendar.
func (s *Service) proposeSecond(t uint64, subs []*submission) error {
	state := s.cfg.Store.State()
	e := SecondEntry{T: t, Proposal: proposalID(), PrevLast: state.Last(), PrevRoot: state.Root(), Roots: make([]round.Request, len(subs))}
	for i, sub := range subs {
		e.Roots[i] = sub.req
	}
	data, err := e.Encode(nil)
	if err != nil {
		s.answerAll(subs, nil, err)
		return nil
	}
	done := make(chan applied, 1)
	s.mu.Lock()
	s.proposals[e.Proposal] = done
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.proposals, e.Proposal)
		s.mu.Unlock()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.CommitTimeout)
	defer cancel()
	start := s.cfg.Now()
	if err := s.cfg.Log.Propose(ctx, data); err != nil {
		s.cfg.Metrics.committed(0, false)
		s.answerAll(subs, nil, fmt.Errorf("%w: second %d: %v", ErrNotCommitted, t, err))
		return nil
	}
	select {
	case a := <-done:
		s.cfg.Metrics.committed(s.cfg.Now().Sub(start), a.err == nil)
		if a.err != nil {
			s.answerAll(subs, nil, a.err)
			return nil
		}
		s.answerStep(t, a.step, subs)
	case <-ctx.Done():
		s.cfg.Metrics.committed(0, false)
		// The entry may still commit later; then it is appended like any
		// other, but these callers have been told to retry.
		s.answerAll(subs, nil, fmt.Errorf("%w: second %d within %v", ErrNotCommitted, t, s.cfg.CommitTimeout))
	}
	return nil
}

// proposalID is a random identity for one proposal: unique across
// members and restarts without coordination.
func proposalID() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:]) // crypto/rand.Read does not fail
	return binary.BigEndian.Uint64(b[:])
}

// Apply appends the second of a committed log entry (index is its raft
// index) on this member's store, through the state-machine step. Its
// writes are not synced and nothing of it is published until Flush,
// which the log calls after each batch of committed entries: a member
// catching up applies thousands of seconds per sync instead of one. An
// entry for a second already appended (a proposal committed twice)
// changes nothing. An error means the member cannot go on from this
// entry (a bad entry, a failed write): the caller stops applying.
func (s *Service) Apply(index uint64, data []byte) error {
	if len(data) == 0 {
		return nil // the leader's empty entry at the start of its term
	}
	if kind, err := entryKind(data); err != nil {
		return fmt.Errorf("entry %d: %w", index, err)
	} else if kind == kindPublication {
		return s.applyPublication(index, data)
	}
	e, err := DecodeSecondEntry(data)
	if err != nil {
		return fmt.Errorf("entry %d: %w", index, err)
	}
	start := s.cfg.Now()
	st := s.cfg.Store
	step, err := calendarstep.Second(st.State(), e.T, e.Roots)
	if errors.Is(err, calendarstep.ErrClosed) {
		s.tellProposer(e.Proposal, applied{err: fmt.Errorf("%w: second %d was closed by another entry", ErrNotCommitted, e.T)})
		return nil
	}
	var buildErr error
	if err != nil && len(e.Roots) > 0 && !errors.Is(err, calendartree.ErrRange) {
		// The roots cannot be built into a tree (submission checks
		// prevent it): the second closes empty on every member alike, as
		// on a single calendar, and its callers get the error.
		buildErr = err
		step, err = calendarstep.Second(st.State(), e.T, nil)
	}
	if err != nil {
		return fmt.Errorf("entry %d: %w", index, err)
	}
	if err := samePrev(st, e); err != nil {
		return fmt.Errorf("entry %d: %w", index, err)
	}
	var root ksi.Imprint
	for b, err := range step.Batches(fillChunk) {
		if err != nil {
			return fmt.Errorf("entry %d: %w", index, err)
		}
		// The index goes with the last batch: a restart after a partial
		// gap applies the entry again and finishes it.
		if b.Last == step.T {
			err = st.WriteApplied(b.State, b.Nodes, index, false)
		} else {
			err = st.Write(b.State, b.Nodes, false)
		}
		if err != nil {
			return fmt.Errorf("entry %d: %w", index, err)
		}
		root = b.State.Root()
	}
	s.setClosed(e.T)
	s.cfg.Metrics.appended(int(step.Leaves()), s.cfg.Now().Sub(start))
	s.unflushed.last, s.unflushed.root = e.T, root
	s.unflushed.answers = append(s.unflushed.answers, proposalResult{e.Proposal, applied{step: step, err: buildErr}})
	return nil
}

// PublicationApplier stores and serves a publication the log committed
// (the Publisher).
type PublicationApplier interface {
	ApplyPublication(e *PublicationEntry) error
}

// SetPublisher names the publisher that applies publication entries; it
// must be set before the log starts applying.
func (s *Service) SetPublisher(p PublicationApplier) { s.publisher = p }

// applyPublication makes the seconds applied so far durable (the
// publication is of one of them), then hands the publication to the
// publisher.
func (s *Service) applyPublication(index uint64, data []byte) error {
	e, err := DecodePublicationEntry(data)
	if err != nil {
		return fmt.Errorf("entry %d: %w", index, err)
	}
	if s.publisher == nil {
		return fmt.Errorf("entry %d: a publication, but this member has no publisher", index)
	}
	if err := s.Flush(); err != nil {
		return err
	}
	if err := s.publisher.ApplyPublication(e); err != nil {
		return fmt.Errorf("entry %d: %w", index, err)
	}
	return nil
}

// unflushed is what Apply did since the last Flush. Apply and Flush are
// called from the log's one goroutine.
type unflushed struct {
	last    uint64      // the last second applied (0: none since the last Flush)
	root    ksi.Imprint // the root after it
	answers []proposalResult
}

type proposalResult struct {
	id uint64
	a  applied
}

// Flush makes the seconds applied since the last Flush durable (one
// synced commit), then moves the watermark to the last of them, and only
// then lets the proposer answer: no signature leaves before its second
// is on this member's disk and in its watermark.
func (s *Service) Flush() error {
	u := s.unflushed
	if u.last == 0 {
		return nil
	}
	s.unflushed = unflushed{answers: u.answers[:0]}
	if err := s.cfg.Store.Sync(); err != nil {
		return err
	}
	if w := s.cfg.Watermark; w != nil {
		if err := w.Answered(u.last, u.root); err != nil {
			return err
		}
	}
	for _, r := range u.answers {
		s.tellProposer(r.id, r.a)
	}
	clear(u.answers)
	return nil
}

// samePrev checks that this member's calendar holds the history the
// entry was proposed on: its root after the proposer's last second is
// the proposer's. The calendar may have gone further (a proposal that
// timed out uncommitted at a leader without quorum is committed later,
// after the one that followed it was proposed on the older state); the
// entry then appends after what is there. A different root, or a
// calendar shorter than the proposer's, means the calendars diverged
// (a member started on another cluster's calendar, or a bug): applying
// on top would answer from a different history.
func samePrev(st *Store, e *SecondEntry) error {
	state := st.State()
	if e.PrevRoot == nil {
		return nil // proposed on an empty calendar: every history includes it
	}
	var root ksi.Imprint
	switch {
	case state.Empty() || state.Last() < e.PrevLast:
	case state.Last() == e.PrevLast:
		root = state.Root()
	default:
		r, err := st.Root(e.PrevLast)
		if err != nil {
			return err
		}
		root = r
	}
	if !bytes.Equal(root, e.PrevRoot) {
		return fmt.Errorf("%w: second %d was proposed on a calendar ending at %d with root %s, this member's root after %d is %s (its calendar ends at %d)",
			ErrHistoryLost, e.T, e.PrevLast, e.PrevRoot, e.PrevLast, root, state.Last())
	}
	return nil
}

func (s *Service) tellProposer(id uint64, a applied) {
	s.mu.Lock()
	done := s.proposals[id]
	s.mu.Unlock()
	if done != nil {
		done <- a // buffered, and each proposal is applied at most once with its id
	}
}

// Applied is the index of the last log entry whose second is in the
// store: a restarted member resumes after it.
func (s *Service) Applied() uint64 { return s.cfg.Store.Applied() }

// snapshotLen is the size of a calendar snapshot's first, last and root
// (the whole snapshot before publications travelled in it).
const snapshotLen = 8 + 8 + imprintLen

// Snapshot describes the calendar and its publications as of the last
// applied entry (catchup.go): a member that receives it checks its own
// calendar against it or fetches what it lacks from a peer.
func (s *Service) Snapshot() ([]byte, error) {
	d, err := s.snapshot()
	if d == nil || err != nil {
		return nil, err
	}
	return d.encode(), nil
}

// Restore is RestoreFrom without peers: a member behind the snapshot
// stops, saying so.
func (s *Service) Restore(index uint64, data []byte) error {
	return s.RestoreFrom(context.Background(), index, data, nil)
}
