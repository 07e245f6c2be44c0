package raftlog

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// Options configure Open. The zero value is valid.
type Options struct {
	// Logger receives Pebble's messages (at debug level) and reports of
	// damaged files; nil discards them.
	Logger *slog.Logger
	// FS is the file system; nil is the operating system's. Tests pass
	// an in-memory or fault-injecting one.
	FS vfs.FS
}

// Storage is a raft log on Pebble. It implements [raft.Storage]; the
// write methods are for the Ready loop and the snapshotting code.
type Storage struct {
	db  *pebble.DB
	dir string

	mu sync.RWMutex
	// first is the index of the first entry kept; first-1 is the index
	// of the "dummy" position whose term is kept in dummyTerm.
	first, dummyTerm uint64
	// last is the index of the last entry; last == first-1 when the log
	// holds no entries.
	last uint64
	hard *pb.HardState        // nil until one is saved
	snap *pb.SnapshotMetadata // nil until a snapshot is applied or created
	// failed is set when a write's outcome is unknown; every later
	// write fails with it and the member must reopen (which checks the
	// log) before going on.
	failed error
}

var _ raft.Storage = (*Storage)(nil)

// Open opens the raft log in dir, creating an empty one if dir holds
// none, and checks it whole (see the package documentation). A damaged
// log is refused with an error wrapping [ErrCorrupt].
func Open(dir string, opts Options) (*Storage, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	db, err := openPebble(dir, opts)
	if err != nil {
		return nil, err
	}
	s := &Storage{db: db, dir: dir}
	if err := s.load(); err != nil {
		db.Close()
		return nil, fmt.Errorf("raftlog: open %s: %w", dir, err)
	}
	return s, nil
}

// Close closes the database. The Storage must not be used afterwards.
func (s *Storage) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("raftlog: close %s: %w", s.dir, err)
	}
	return nil
}

// get reads one value, copied out of Pebble's buffer; a missing key is
// (nil, nil).
func (s *Storage) get(key []byte) ([]byte, error) {
	v, closer, err := s.db.Get(key)
	if errors.Is(err, pebble.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, readErr(fmt.Sprintf("read %q", key[:1]), err)
	}
	out := append([]byte(nil), v...)
	closer.Close()
	return out, nil
}

// load reads the bookkeeping of a freshly opened database (initialising
// an empty one) and checks the whole log.
func (s *Storage) load() error {
	format, err := s.get([]byte{keyFormat})
	if err != nil {
		return err
	}
	if format == nil {
		return s.initialise()
	}
	if string(format) != formatMarker {
		return fmt.Errorf("%w: format marker %q, want %q", ErrCorrupt, format, formatMarker)
	}
	dummy, err := s.get([]byte{keyDummy})
	if err != nil {
		return err
	}
	if dummy == nil {
		return fmt.Errorf("%w: first index record missing", ErrCorrupt)
	}
	di, dt, err := decodeDummy(dummy)
	if err != nil {
		return err
	}
	s.first, s.dummyTerm = di+1, dt
	if v, err := s.get([]byte{keyHard}); err != nil {
		return err
	} else if v != nil {
		s.hard = new(pb.HardState)
		if err := decodeMessage("hard state", v, s.hard); err != nil {
			return err
		}
	}
	if v, err := s.get([]byte{keySnapshot}); err != nil {
		return err
	} else if v != nil {
		snap := new(pb.Snapshot)
		if err := decodeMessage("snapshot", v, snap); err != nil {
			return err
		}
		s.snap = pb.EnsureSnapshot(snap).Metadata
	}
	if s.last, err = s.checkEntries(); err != nil {
		return err
	}
	return s.checkBookkeeping()
}

// initialise writes the marker and the empty log's first index to a new
// database; a database holding other keys is not a raft log and refused.
func (s *Storage) initialise() error {
	it, err := s.db.NewIter(nil)
	if err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	empty := !it.First()
	if err := it.Close(); err != nil {
		return fmt.Errorf("raftlog: %w", err)
	}
	if !empty {
		return fmt.Errorf("%w: the database has no format marker (not a raft log, or its first write was lost)", ErrCorrupt)
	}
	b := s.db.NewBatch()
	defer b.Close()
	_ = b.Set([]byte{keyFormat}, []byte(formatMarker), nil)
	_ = b.Set([]byte{keyDummy}, encodeDummy(0, 0), nil)
	if err := b.Commit(pebble.Sync); err != nil {
		return fmt.Errorf("raftlog: initialise: %w", err)
	}
	s.first, s.last = 1, 0
	return nil
}

// checkEntries reads every entry once: contiguous from first, each under
// its own index, terms not decreasing and not below the dummy's. It
// returns the last index.
func (s *Storage) checkEntries() (uint64, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: entryLower, UpperBound: entryUpper})
	if err != nil {
		return 0, fmt.Errorf("raftlog: %w", err)
	}
	defer it.Close()
	next, prevTerm := s.first, s.dummyTerm
	for ok := it.First(); ok; ok = it.Next() {
		k := it.Key()
		if len(k) != 9 {
			return 0, fmt.Errorf("%w: entry key of %d bytes", ErrCorrupt, len(k))
		}
		i := uint64FromKey(k)
		if i != next {
			if i < next {
				return 0, fmt.Errorf("%w: entry %d is below the first kept index %d", ErrCorrupt, i, s.first)
			}
			return 0, fmt.Errorf("%w: entries %d to %d are missing", ErrCorrupt, next, i-1)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return 0, readErr(fmt.Sprintf("read entry %d", i), err)
		}
		e, err := decodeEntry(i, v)
		if err != nil {
			return 0, err
		}
		if e.GetTerm() < prevTerm {
			return 0, fmt.Errorf("%w: entry %d has term %d, below the term %d before it", ErrCorrupt, i, e.GetTerm(), prevTerm)
		}
		prevTerm = e.GetTerm()
		next++
	}
	if err := it.Error(); err != nil {
		return 0, readErr("read entries", err)
	}
	return next - 1, nil
}

// checkBookkeeping checks the hard state and the snapshot against the
// log: a commit index past the last entry means acknowledged entries
// were lost.
func (s *Storage) checkBookkeeping() error {
	if c := s.hard.GetCommit(); c > s.last {
		return fmt.Errorf("%w: hard state commits index %d but the log ends at %d (its tail was lost)", ErrCorrupt, c, s.last)
	}
	if si := s.snap.GetIndex(); si > s.last {
		return fmt.Errorf("%w: snapshot at index %d but the log ends at %d", ErrCorrupt, si, s.last)
	}
	return nil
}

// readErr wraps an error from Pebble; a damaged file is ErrCorrupt.
func readErr(what string, err error) error {
	if pebble.IsCorruptionError(err) {
		// Pebble's message goes on with lines of detail; the first
		// names the file and the check that failed.
		first, _, _ := strings.Cut(err.Error(), "\n")
		return fmt.Errorf("%w: %s: %s", ErrCorrupt, what, first)
	}
	return fmt.Errorf("raftlog: %s: %w", what, err)
}

func uint64FromKey(k []byte) uint64 {
	var i uint64
	for _, b := range k[1:9] {
		i = i<<8 | uint64(b)
	}
	return i
}

// InitialState implements [raft.Storage]: the saved hard state (nil if
// none was saved) and the membership of the latest snapshot.
func (s *Storage) InitialState() (*pb.HardState, *pb.ConfState, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var hs *pb.HardState
	if s.hard != nil {
		hs = proto.Clone(s.hard).(*pb.HardState)
	}
	var cs *pb.ConfState
	if s.snap != nil && s.snap.ConfState != nil {
		cs = proto.Clone(s.snap.ConfState).(*pb.ConfState)
	}
	return hs, pb.EnsureConfState(cs), nil
}

// Entries implements [raft.Storage]: the entries [lo, hi), stopping
// before the total encoded size passes maxSize but returning at least
// one. The slice and the entries are new on each call.
func (s *Storage) Entries(lo, hi, maxSize uint64) ([]*pb.Entry, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if lo < s.first {
		return nil, raft.ErrCompacted
	}
	if hi > s.last+1 {
		return nil, fmt.Errorf("raftlog: entries [%d, %d) asked past the last index %d", lo, hi, s.last)
	}
	if s.last < s.first {
		return nil, raft.ErrUnavailable
	}
	if lo >= hi {
		return []*pb.Entry{}, nil
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: entryKey(lo), UpperBound: entryKey(hi)})
	if err != nil {
		return nil, fmt.Errorf("raftlog: %w", err)
	}
	defer it.Close()
	var out []*pb.Entry
	var size uint64
	next := lo
	for ok := it.First(); ok; ok = it.Next() {
		if i := uint64FromKey(it.Key()); i != next {
			return nil, fmt.Errorf("%w: entry %d missing", ErrCorrupt, next)
		}
		v, err := it.ValueAndErr()
		if err != nil {
			return nil, readErr(fmt.Sprintf("read entry %d", next), err)
		}
		e, err := decodeEntry(next, v)
		if err != nil {
			return nil, err
		}
		size += uint64(proto.Size(e))
		if len(out) > 0 && size > maxSize {
			return out, nil
		}
		out = append(out, e)
		next++
	}
	if err := it.Error(); err != nil {
		return nil, readErr("read entries", err)
	}
	if next != hi {
		return nil, fmt.Errorf("%w: entry %d missing", ErrCorrupt, next)
	}
	return out, nil
}

// Term implements [raft.Storage]: the term of entry i, for i from
// FirstIndex()-1 to LastIndex().
func (s *Storage) Term(i uint64) (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.term(i)
}

func (s *Storage) term(i uint64) (uint64, error) {
	switch {
	case i < s.first-1:
		return 0, raft.ErrCompacted
	case i > s.last:
		return 0, raft.ErrUnavailable
	case i == s.first-1:
		return s.dummyTerm, nil
	}
	v, err := s.get(entryKey(i))
	if err != nil {
		return 0, err
	}
	if v == nil {
		return 0, fmt.Errorf("%w: entry %d missing", ErrCorrupt, i)
	}
	return entryTerm(i, v)
}

// LastIndex implements [raft.Storage].
func (s *Storage) LastIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.last, nil
}

// FirstIndex implements [raft.Storage].
func (s *Storage) FirstIndex() (uint64, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.first, nil
}

// Snapshot implements [raft.Storage]: the latest snapshot, or an empty
// one. The snapshot is always at hand, so it never answers
// [raft.ErrSnapshotTemporarilyUnavailable].
func (s *Storage) Snapshot() (*pb.Snapshot, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	v, err := s.get([]byte{keySnapshot})
	if err != nil {
		return nil, err
	}
	snap := new(pb.Snapshot)
	if v != nil {
		if err := decodeMessage("snapshot", v, snap); err != nil {
			return nil, err
		}
	}
	return pb.EnsureSnapshot(snap), nil
}
