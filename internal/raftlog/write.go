package raftlog

import (
	"fmt"

	"github.com/cockroachdb/pebble/v2"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// state is the in-memory bookkeeping a write computes before it commits;
// it is installed only once the batch is durable.
type state struct {
	first, dummyTerm, last uint64
	hard                   *pb.HardState
	snap                   *pb.SnapshotMetadata
}

func (s *Storage) state() state {
	return state{first: s.first, dummyTerm: s.dummyTerm, last: s.last, hard: s.hard, snap: s.snap}
}

func (s *Storage) install(st state) {
	s.first, s.dummyTerm, s.last, s.hard, s.snap = st.first, st.dummyTerm, st.last, st.hard, st.snap
}

// commit writes the batch with a sync and installs st. A failed commit
// leaves the outcome unknown, so the Storage refuses further writes.
func (s *Storage) commit(b *pebble.Batch, st state, what string) (err error) {
	defer func() {
		// Pebble reports a failed WAL write through Fatalf, which
		// panics (pebbleLogger): the write is not acknowledged, and
		// the commit pipeline is unusable until the log is reopened.
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			s.failed = fmt.Errorf("raftlog: %s: %s (reopen the log before writing again)", what, string(f))
			err = s.failed
		}
	}()
	if err := b.Commit(pebble.Sync); err != nil {
		s.failed = fmt.Errorf("raftlog: %s: %w (reopen the log before writing again)", what, err)
		return s.failed
	}
	s.install(st)
	return nil
}

// Save persists one raft Ready in one synced batch: the snapshot if it
// is not empty (discarding the log it replaces), then the entries (which
// replace any entries from the first one's index on), then the hard state
// if it is not empty. When Save returns nil all of it is durable and the
// Ready's messages may be sent; when it returns an error none of it is
// visible after reopening.
//
// Entries must be consecutive and must not leave a gap after the log;
// entries before the first kept index are skipped. Entries that would
// replace a committed entry, and a hard state whose commit index lies past
// the resulting log, are refused: raft never asks for either, and either
// would lose what a majority acknowledged.
func (s *Storage) Save(hard *pb.HardState, entries []*pb.Entry, snap *pb.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	b := s.db.NewBatch()
	defer b.Close()
	st := s.state()
	if !raft.IsEmptySnap(snap) {
		if err := s.stageSnapshot(b, &st, snap); err != nil {
			return err
		}
	}
	if err := stageEntries(b, &st, entries); err != nil {
		return err
	}
	if !raft.IsEmptyHardState(hard) {
		if hard.GetCommit() > st.last {
			return fmt.Errorf("raftlog: hard state commits index %d past the last index %d", hard.GetCommit(), st.last)
		}
		v, err := encodeMessage("hard state", hard)
		if err != nil {
			return err
		}
		_ = b.Set([]byte{keyHard}, v, nil)
		st.hard = proto.Clone(hard).(*pb.HardState)
	}
	if b.Empty() {
		return nil
	}
	return s.commit(b, st, "save")
}

// ApplySnapshot replaces the log with the snapshot: every entry is
// discarded, and the log goes on from the snapshot's index. A snapshot
// not newer than the current one is refused with [raft.ErrSnapOutOfDate],
// one behind the commit index with an error.
// Ready loops use [Storage.Save], which does this in the same batch as
// the entries and hard state.
func (s *Storage) ApplySnapshot(snap *pb.Snapshot) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	b := s.db.NewBatch()
	defer b.Close()
	st := s.state()
	if err := s.stageSnapshot(b, &st, snap); err != nil {
		return err
	}
	return s.commit(b, st, "apply snapshot")
}

// stageSnapshot adds the writes of applying snap to b. It works on a
// copy: the caller's snapshot may be shared with raft.
func (s *Storage) stageSnapshot(b *pebble.Batch, st *state, snap *pb.Snapshot) error {
	if snap == nil {
		snap = pb.EnsureSnapshot(nil)
	} else {
		snap = pb.EnsureSnapshot(proto.Clone(snap).(*pb.Snapshot))
	}
	cur, idx := st.snap.GetIndex(), snap.GetMetadata().GetIndex()
	// An index-0 snapshot carries only a membership (bootstrap); it may
	// replace another index-0 one, as raft.MemoryStorage allows.
	if cur != 0 && cur >= idx {
		return raft.ErrSnapOutOfDate
	}
	if c := st.hard.GetCommit(); c > idx {
		// raft sends only snapshots past the commit index; this one
		// would drop committed entries.
		return fmt.Errorf("raftlog: snapshot at %d is behind the commit index %d", idx, c)
	}
	v, err := encodeMessage("snapshot", snap)
	if err != nil {
		return err
	}
	term := snap.GetMetadata().GetTerm()
	_ = b.DeleteRange(entryLower, entryUpper, nil)
	_ = b.Set([]byte{keyDummy}, encodeDummy(idx, term), nil)
	_ = b.Set([]byte{keySnapshot}, v, nil)
	st.first, st.dummyTerm, st.last = idx+1, term, idx
	st.snap = snap.Metadata
	return nil
}

// stageEntries adds the writes of appending entries to b.
func stageEntries(b *pebble.Batch, st *state, entries []*pb.Entry) error {
	if len(entries) == 0 {
		return nil
	}
	lo := entries[0].GetIndex()
	for k, e := range entries {
		if e.GetIndex() != lo+uint64(k) {
			return fmt.Errorf("raftlog: entries not consecutive: index %d after %d", e.GetIndex(), lo+uint64(k)-1)
		}
	}
	hi := lo + uint64(len(entries)) - 1
	if hi < st.first {
		return nil // all compacted away already
	}
	if lo < st.first {
		entries, lo = entries[st.first-lo:], st.first
	}
	if lo > st.last+1 {
		return fmt.Errorf("raftlog: entries from %d would leave a gap after the last index %d", lo, st.last)
	}
	if c := st.hard.GetCommit(); lo <= c {
		// Log matching never replaces a committed entry; a Ready that
		// does is a bug upstream, refused before it loses anything.
		return fmt.Errorf("raftlog: entries from %d would replace committed entries (commit %d)", lo, c)
	}
	if lo <= st.last {
		// The new entries conflict with (or repeat) the suffix from lo:
		// raft's log matching says everything from lo on is replaced.
		_ = b.DeleteRange(entryKey(lo), entryKey(st.last+1), nil)
	}
	for _, e := range entries {
		v, err := encodeEntry(e)
		if err != nil {
			return err
		}
		_ = b.Set(entryKey(e.GetIndex()), v, nil)
	}
	st.last = hi
	return nil
}

// Compact discards the entries before index i, keeping the term of i for
// Term(i). The caller compacts only what it has applied (and, for a
// member that may have to send it, what a snapshot covers). Compacting at
// or before the first kept index fails with [raft.ErrCompacted]; past the
// last index is an error.
func (s *Storage) Compact(i uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return s.failed
	}
	if i <= s.first-1 {
		return raft.ErrCompacted
	}
	if i > s.last {
		return fmt.Errorf("raftlog: compact at %d past the last index %d", i, s.last)
	}
	term, err := s.term(i)
	if err != nil {
		return err
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.DeleteRange(entryKey(s.first), entryKey(i+1), nil)
	_ = b.Set([]byte{keyDummy}, encodeDummy(i, term), nil)
	st := s.state()
	st.first, st.dummyTerm = i+1, term
	return s.commit(b, st, "compact")
}

// CreateSnapshot records a snapshot of the state machine at index i (an
// applied index) with the membership cs (nil keeps the previous one) and
// the application's data, and returns it. An index not newer than the
// current snapshot fails with [raft.ErrSnapOutOfDate]; one already
// compacted (its term unknown) with [raft.ErrCompacted]; one past the
// last index is an error. The log is not compacted: call
// [Storage.Compact] for that.
func (s *Storage) CreateSnapshot(i uint64, cs *pb.ConfState, data []byte) (*pb.Snapshot, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return nil, s.failed
	}
	if i <= s.snap.GetIndex() {
		return nil, raft.ErrSnapOutOfDate
	}
	if i > s.last {
		return nil, fmt.Errorf("raftlog: snapshot at %d past the last index %d", i, s.last)
	}
	term, err := s.term(i)
	if err != nil {
		return nil, err
	}
	meta := pb.EnsureSnapshotMetadata(nil)
	if s.snap != nil {
		meta.ConfState = proto.Clone(s.snap.GetConfState()).(*pb.ConfState)
	}
	if cs != nil {
		meta.ConfState = proto.Clone(cs).(*pb.ConfState)
	}
	meta.ConfState = pb.EnsureConfState(meta.ConfState)
	meta.Index, meta.Term = new(i), new(term)
	snap := &pb.Snapshot{Metadata: meta, Data: data}
	v, err := encodeMessage("snapshot", snap)
	if err != nil {
		return nil, err
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set([]byte{keySnapshot}, v, nil)
	st := s.state()
	st.snap = proto.Clone(meta).(*pb.SnapshotMetadata)
	if err := s.commit(b, st, "create snapshot"); err != nil {
		return nil, err
	}
	return proto.Clone(snap).(*pb.Snapshot), nil
}
