package calendar

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
)

// The calendar hash tree's arithmetic (shape, appends, roots, chains) is
// package ksi/calendartree; the store keeps what it needs in Pebble.
// Every node calendartree.Append returns is stored under (height, index)
// in the same batch as the new last second and root; the store's
// calendartree.State (the peaks of the current tree) stays in memory, so
// appending a leaf reads nothing, and any root or chain costs O(log t)
// node reads through the store's calendartree.NodeReader.

// Errors of the store. Callers map them to protocol status codes.
var (
	// ErrTimeTooOld: the second is before the calendar's first second.
	ErrTimeTooOld = errors.New("calendar: time before the calendar's first second")
	// ErrTimeTooNew: the second has not been appended yet.
	ErrTimeTooNew = errors.New("calendar: time after the calendar's last second")
	// ErrBadRange: a chain was asked from a leaf to an earlier root.
	ErrBadRange = errors.New("calendar: publication time before aggregation time")
	// ErrOutOfOrder: an append was not for the next second (the rule of
	// the calendar's state-machine step, so its error).
	ErrOutOfOrder = calendartree.ErrOutOfOrder
	// ErrCorrupt: the stored calendar is inconsistent.
	ErrCorrupt = errors.New("calendar: store corrupt")
	// ErrFailed: an earlier write failed; the store refuses further work
	// until reopened, so it never answers from a state it could not save.
	ErrFailed = errors.New("calendar: store failed")
	// ErrEmpty: nothing has been appended yet.
	ErrEmpty = errors.New("calendar: no seconds appended yet")
	// ErrDiskFull: free space fell below the reserve; the store stops
	// before Pebble would fail mid-write.
	ErrDiskFull = errors.New("calendar: disk full")
)

// calendarAlg is the hash algorithm of every node Tempel writes.
const calendarAlg = calendartree.Alg

// imprintLen is the size of a stored node.
const imprintLen = 1 + sha256.Size

// EmptyLeaf is the leaf of a second without input: a SHA-256 imprint with
// an all-zero digest (docs/design/architecture.md#time).
var EmptyLeaf = calendartree.EmptyLeaf()

// Key layout.
const (
	prefixNode = 'n' // 'n' height(1) index(8 BE) → imprint
	prefixMeta = 'm' // 'm' name → value
	prefixPub  = 'p' // 'p' time(8 BE) → publication record TLV
	prefixBlob = 'b' // 'b' name → bytes (the signed publications file)
	prefixLoss = 'g' // 'g' acceptance time(8 BE, ns) → LossRecord JSON
)

var (
	metaVersion = []byte("mversion")
	metaFirst   = []byte("mfirst")
	metaLast    = []byte("mlast")
	metaRoot    = []byte("mroot") // root at the last second
	// metaApplied is the index of the last replicated log entry whose
	// nodes are in the store, written in the same batch as them.
	metaApplied = []byte("mapplied")
)

const storeVersion = 1

// cacheMinHeight: nodes at or above this height are cached in memory on
// first read. There are t/256 of them (about 40 MB for ten years), and they are
// on every chain.
const cacheMinHeight = 8

// Store is the calendar's durable state in Pebble.
type Store struct {
	db      *pebble.DB
	opts    StoreOptions // with defaults
	log     *slog.Logger
	fs      pebbleFS
	dir     string
	minFree uint64

	mu      sync.RWMutex
	state   calendartree.State // replaced, never changed, by each append
	applied uint64             // metaApplied
	failed  error

	cacheMu sync.RWMutex
	cache   map[nodeID]ksi.Imprint

	reads atomic.Uint64 // node reads from Pebble, for benchmarks

	// Node reads go through reusable iterators: a Pebble Get builds and
	// closes an iterator each time, which costs more than the lookup.
	// An iterator sees the store as of its creation, so each carries the
	// append count it was made at and is remade when older than needed.
	appends  atomic.Uint64
	iterPool chan *nodeIter
}

type nodeIter struct {
	it      *pebble.Iterator
	appends uint64
}

// nodeID is a node's id as the key layout uses it.
type nodeID calendartree.NodeID

// StoreOptions configure OpenStore.
type StoreOptions struct {
	Logger *slog.Logger
	// CacheBytes sizes Pebble's block cache (default 256 MiB, about 30
	// days of calendar: recent seconds, the ones most extended, stay in
	// memory).
	CacheBytes int64
	// BlockSize is Pebble's data block size (default 16 KiB): with nodes
	// stored in tree order, the low part of a chain is one block read.
	BlockSize int
	// FS replaces the file system (tests inject faults).
	FS pebbleFS
	// MinFreeBytes is the free space below which appends stop (default
	// DefaultMinFreeBytes): a full disk stops the calendar cleanly instead
	// of failing inside a write, and it resumes once space is freed.
	MinFreeBytes uint64
	// ReadOnly opens the store for reading only (offline checks).
	ReadOnly bool
}

// DefaultMinFreeBytes is the default free-space reserve: room for a few
// hours of calendar (about 100 bytes a second) and Pebble's own files
// (WAL, a flush, the MANIFEST) with a wide margin.
const DefaultMinFreeBytes = 64 << 20

// Open opens (creating if needed) the calendar store in dir and checks its
// consistency: a corrupted store is reported at open, not when a chain
// later fails to verify.
func OpenStore(dir string, opts StoreOptions) (*Store, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	cacheBytes := opts.CacheBytes
	if cacheBytes == 0 {
		cacheBytes = 256 << 20
	}
	blockSize := opts.BlockSize
	if blockSize == 0 {
		blockSize = 16 << 10
	}
	fs := opts.FS
	if fs == nil {
		fs = vfs.Default
	}
	opts.Logger, opts.CacheBytes, opts.BlockSize, opts.FS = log, cacheBytes, blockSize, fs
	minFree := opts.MinFreeBytes
	if minFree == 0 {
		minFree = DefaultMinFreeBytes
	}
	if opts.ReadOnly {
		if _, err := os.Stat(dir); err != nil {
			return nil, fmt.Errorf("calendar: open store: %w", err)
		}
	}
	db, err := openPebble(dir, opts)
	if err != nil {
		return nil, err
	}
	s := &Store{db: db, opts: opts, log: log, fs: fs, dir: dir, minFree: minFree, cache: make(map[nodeID]ksi.Imprint),
		iterPool: make(chan *nodeIter, 16)}
	if err := s.load(); err != nil {
		s.Close()
		return nil, describeOpenError(dir, err)
	}
	return s, nil
}

// Close closes the store.
func (s *Store) Close() error {
	s.drainIters()
	return s.db.Close()
}

// takeIter returns a pooled node iterator that sees every append so far,
// or a new one.
func (s *Store) takeIter() (*nodeIter, error) {
	want := s.appends.Load()
	select {
	case ni := <-s.iterPool:
		if ni.appends >= want {
			return ni, nil
		}
		ni.it.Close()
	default:
	}
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixNode}, UpperBound: []byte{prefixNode + 1}})
	if err != nil {
		return nil, err
	}
	return &nodeIter{it: it, appends: want}, nil
}

// putIter returns an iterator to the pool, or closes it when full.
func (s *Store) putIter(ni *nodeIter) {
	select {
	case s.iterPool <- ni:
	default:
		ni.it.Close()
	}
}

// get reads a node's value.
func (ni *nodeIter) get(key []byte) ([]byte, error) {
	var v []byte
	if ni.it.SeekGE(key) && bytes.Equal(ni.it.Key(), key) {
		v = append([]byte(nil), ni.it.Value()...)
	}
	if err := ni.it.Error(); err != nil {
		return nil, err
	}
	if v == nil {
		return nil, pebble.ErrNotFound
	}
	return v, nil
}

func (s *Store) load() error {
	v, err := s.getMeta(metaVersion)
	if errors.Is(err, pebble.ErrNotFound) {
		if s.opts.ReadOnly {
			return nil
		}
		// A new store: write the version so a later open can tell an
		// empty store from a damaged one.
		b := s.db.NewBatch()
		defer b.Close()
		b.Set(metaVersion, u64(storeVersion), nil)
		return b.Commit(pebble.Sync)
	}
	if err != nil {
		return err
	}
	if binary.BigEndian.Uint64(v) != storeVersion {
		return fmt.Errorf("%w: version %d, want %d", ErrCorrupt, binary.BigEndian.Uint64(v), storeVersion)
	}
	if v, err := s.getMeta(metaApplied); err == nil && len(v) == 8 {
		s.applied = binary.BigEndian.Uint64(v)
	} else if !errors.Is(err, pebble.ErrNotFound) {
		return fmt.Errorf("%w: applied log index unreadable: %v", ErrCorrupt, err)
	}
	first, errF := s.getMeta(metaFirst)
	last, errL := s.getMeta(metaLast)
	if errors.Is(errF, pebble.ErrNotFound) && errors.Is(errL, pebble.ErrNotFound) {
		return nil
	}
	if errF != nil || errL != nil {
		return fmt.Errorf("%w: first/last second missing: %v %v", ErrCorrupt, errF, errL)
	}
	firstT, lastT := binary.BigEndian.Uint64(first), binary.BigEndian.Uint64(last)
	if lastT < firstT {
		return fmt.Errorf("%w: last second %d before first %d", ErrCorrupt, lastT, firstT)
	}
	// Load checks each stored peak against its children; the peaks must
	// also fold to the root saved with the last append.
	st, err := calendartree.Load(nodeReader{s}, firstT, lastT)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	root, err := s.getMeta(metaRoot)
	if err != nil {
		return fmt.Errorf("%w: root of second %d missing: %v", ErrCorrupt, lastT, err)
	}
	if got := st.Root(); !bytes.Equal(got, root) {
		return fmt.Errorf("%w: stored nodes give root %s, saved root %s", ErrCorrupt, got, ksi.Imprint(root))
	}
	s.state = st
	return nil
}

// Head returns the first and last appended seconds.
func (s *Store) Head() (first, last uint64, ok bool) {
	st := s.current()
	return st.First(), st.Last(), !st.Empty()
}

// current returns the calendar's state as of the last append.
func (s *Store) current() calendartree.State {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.state
}

// Failed returns the write error that stopped the store, if any.
func (s *Store) Failed() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.failed
}

// Reads returns the number of node reads from Pebble so far.
func (s *Store) Reads() uint64 { return s.reads.Load() }

// Append appends leaf t (the calendar's state-machine step,
// calendartree.Append: the same calendar and the same (t, leaf) give the
// same new state) and returns the new root. The leaf and every node it
// completes are written in one batch with Sync before Append returns, so
// nothing derived from the new root can leave the process before it is
// durable.
func (s *Store) Append(t uint64, leaf ksi.Imprint) (ksi.Imprint, error) {
	return s.AppendRange(t, []ksi.Imprint{leaf}, true)
}

// AppendRange appends leaves for seconds t0, t0+1, … in one batch, synced
// when sync is set (bulk loading, tests).
func (s *Store) AppendRange(t0 uint64, leaves []ksi.Imprint, sync bool) (root ksi.Imprint, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	next, nodes, err := calendartree.Append(s.state, t0, leaves)
	if err != nil {
		return nil, err
	}
	if err := s.writeLocked(next, nodes, sync, 0); err != nil {
		return nil, err
	}
	return next.Root(), nil
}

// State returns the calendar's state as of the last write: the input of
// the next state-machine step (ksi/calendarstep).
func (s *Store) State() calendartree.State { return s.current() }

// Write stores the nodes of one state-machine step's batch and makes
// next the store's state: the nodes, first, last and root go in one
// batch, synced when sync is set. The batch must continue the store's
// state (its first node is the leaf after the last stored second), so a
// step computed on a state that is no longer current is refused.
func (s *Store) Write(next calendartree.State, nodes []calendartree.Node, sync bool) error {
	return s.write(next, nodes, sync, 0)
}

// WriteApplied is Write that also records applied as the index
// of the replicated log entry the nodes come from, in the same batch: a
// member that restarts resumes applying after it, and an entry applied
// again finds its second already closed.
func (s *Store) WriteApplied(next calendartree.State, nodes []calendartree.Node, applied uint64, sync bool) error {
	return s.write(next, nodes, sync, applied)
}

// Sync makes every write so far durable: it commits the applied index
// again, synced (a synced commit syncs the write-ahead log before it).
func (s *Store) Sync() (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return fmt.Errorf("%w: %v", ErrFailed, s.failed)
	}
	defer s.recoverWriteFailure(&err)
	b := s.db.NewBatch()
	defer b.Close()
	b.Set(metaApplied, u64(s.applied), nil)
	return s.commitLocked(b, true, "sync")
}

// commitLocked commits a batch. A commit that fails stops the store: the
// write may or may not be on disk, so nothing goes on from an unknown
// state until the store is reopened, which reloads what is durable.
func (s *Store) commitLocked(b *pebble.Batch, sync bool, what string) error {
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := b.Commit(opt); err != nil {
		s.failed = err
		s.log.Error("calendar write failed; store stopped until the server is restarted", "write", what, "err", err)
		return fmt.Errorf("%w: %s: %v", ErrFailed, what, err)
	}
	return nil
}

// Applied returns the index of the last replicated log entry stored
// (0 for a calendar that is not replicated).
func (s *Store) Applied() uint64 {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.applied
}

func (s *Store) write(next calendartree.State, nodes []calendartree.Node, sync bool, applied uint64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(nodes) == 0 || nodes[0].ID.Height != 0 {
		return fmt.Errorf("calendar: write of a batch that does not start with a leaf")
	}
	t0, cur := nodes[0].ID.Index, s.state
	if cur.Empty() && t0 != next.First() || !cur.Empty() && (t0 != cur.Last()+1 || next.First() != cur.First()) || next.Last() < t0 {
		return fmt.Errorf("%w: batch of seconds %d..%d does not continue the stored calendar %d..%d",
			calendartree.ErrOutOfOrder, t0, next.Last(), cur.First(), cur.Last())
	}
	return s.writeLocked(next, nodes, sync, applied)
}

// writeLocked commits nodes and next's bookkeeping (and applied, when
// not 0) in one batch and installs next. A commit that fails stops the
// store: the write may or may not be durable.
func (s *Store) writeLocked(next calendartree.State, nodes []calendartree.Node, sync bool, applied uint64) (err error) {
	if s.failed != nil {
		return fmt.Errorf("%w: %v", ErrFailed, s.failed)
	}
	// Below the reserve nothing is written, so nothing is in doubt: the
	// append is refused and may be tried again once space is freed.
	if err := s.checkSpace(); err != nil {
		return err
	}
	defer s.recoverWriteFailure(&err)
	b := s.db.NewBatchWithSize(len(nodes)*(10+imprintLen+16) + 3*48)
	defer b.Close()
	var key [10]byte
	for _, n := range nodes {
		b.Set(nodeKey(&key, nodeID(n.ID)), n.Hash, nil)
	}
	b.Set(metaFirst, u64(next.First()), nil)
	b.Set(metaLast, u64(next.Last()), nil)
	b.Set(metaRoot, next.Root(), nil)
	if applied != 0 {
		b.Set(metaApplied, u64(applied), nil)
	}
	if err := s.commitLocked(b, sync, fmt.Sprintf("append %d", nodes[0].ID.Index)); err != nil {
		return err
	}
	s.state = next
	if applied != 0 {
		s.applied = applied
	}
	s.appends.Add(1)
	return nil
}

// checkSpace refuses to write when free space is below the reserve.
func (s *Store) checkSpace() error {
	du, err := s.fs.GetDiskUsage(s.dir)
	if err != nil {
		return nil // unknown: let the write itself decide
	}
	if du.AvailBytes < s.minFree {
		return fmt.Errorf("%w: %d bytes free in %s, below the reserve of %d (--min-free)", ErrDiskFull, du.AvailBytes, s.dir, s.minFree)
	}
	return nil
}

// recoverWriteFailure turns Pebble's fatal commit error (reported through
// the logger's Fatalf, which panics) into a failed store: the write may or
// may not be durable, so nothing is answered and the store refuses all
// further work until it is reopened.
func (s *Store) recoverWriteFailure(err *error) {
	r := recover()
	if r == nil {
		return
	}
	f, ok := r.(pebbleFatal)
	if !ok {
		panic(r)
	}
	s.failed = f
	s.log.Error("calendar store stopped after a write failure until the server is restarted", "err", f.msg)
	*err = fmt.Errorf("%w: %v", ErrFailed, f)
}

// drainIters closes the pooled iterators.
func (s *Store) drainIters() {
	for {
		select {
		case ni := <-s.iterPool:
			ni.it.Close()
		default:
			return
		}
	}
}

// Root returns the calendar root after second p.
func (s *Store) Root(p uint64) (ksi.Imprint, error) {
	st, err := s.checkRange(p, p)
	if err != nil {
		return nil, err
	}
	return st.RootAt(nodeReader{s}, p)
}

// Leaf returns the leaf of second t.
func (s *Store) Leaf(t uint64) (ksi.Imprint, error) {
	st, err := s.checkRange(t, t)
	if err != nil {
		return nil, err
	}
	return st.Leaf(nodeReader{s}, t)
}

// Chain returns the calendar hash chain from leaf t to the root after
// second p, as a calendar chain element (publication time p, aggregation
// time t).
func (s *Store) Chain(t, p uint64) (*ksi.CalendarChain, error) {
	if p < t {
		return nil, fmt.Errorf("%w: %d < %d", ErrBadRange, p, t)
	}
	st, err := s.checkRange(t, p)
	if err != nil {
		return nil, err
	}
	return st.Chain(nodeReader{s}, t, p)
}

// checkRange returns the state to read seconds t..p from, or the error
// that refuses them.
func (s *Store) checkRange(t, p uint64) (calendartree.State, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	st := s.state
	switch {
	case s.failed != nil:
		return st, fmt.Errorf("%w: %v", ErrFailed, s.failed)
	case st.Empty():
		return st, ErrEmpty
	case t < st.First():
		return st, fmt.Errorf("%w: %d < %d", ErrTimeTooOld, t, st.First())
	case p > st.Last():
		return st, fmt.Errorf("%w: %d > %d", ErrTimeTooNew, p, st.Last())
	}
	return st, nil
}

// nodeReader reads nodes for calendartree: high nodes from the cache,
// the others from Pebble through one pooled iterator per call.
type nodeReader struct{ s *Store }

// ReadNodes implements calendartree.NodeReader.
func (r nodeReader) ReadNodes(ids []calendartree.NodeID, out []ksi.Imprint) (err error) {
	s := r.s
	var ni *nodeIter
	defer func() {
		if ni != nil {
			s.putIter(ni)
		}
	}()
	var key [10]byte
	for i, cid := range ids {
		id := nodeID(cid)
		if id.Height >= cacheMinHeight {
			s.cacheMu.RLock()
			n, ok := s.cache[id]
			s.cacheMu.RUnlock()
			if ok {
				out[i] = n
				continue
			}
		}
		if ni == nil {
			if ni, err = s.takeIter(); err != nil {
				return fmt.Errorf("calendar: read node: %w", err)
			}
		}
		s.reads.Add(1)
		v, err := ni.get(nodeKey(&key, id))
		if err != nil {
			if errors.Is(err, pebble.ErrNotFound) {
				return fmt.Errorf("%w: node (height %d, index %d) missing", ErrCorrupt, id.Height, id.Index)
			}
			return fmt.Errorf("calendar: read node: %w", err)
		}
		n := ksi.Imprint(v)
		if len(n) != imprintLen || n.Alg() != calendarAlg {
			return fmt.Errorf("%w: node (height %d, index %d) is not a SHA-256 imprint (%d bytes)", ErrCorrupt, id.Height, id.Index, len(n))
		}
		if id.Height >= cacheMinHeight {
			s.cacheMu.Lock()
			s.cache[id] = n
			s.cacheMu.Unlock()
		}
		out[i] = n
	}
	return nil
}

func (s *Store) getMeta(k []byte) ([]byte, error) {
	v, closer, err := s.db.Get(k)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// nodeKey orders nodes by their in-order position in the tree, (2i+1)·2^h,
// so the nodes of a perfect subtree are contiguous on disk and the low
// part of any chain lies in one or two blocks. The height byte follows
// to keep keys unique (position alone is, but it makes dumps readable).
func nodeKey(buf *[10]byte, id nodeID) []byte {
	buf[0] = prefixNode
	binary.BigEndian.PutUint64(buf[1:9], (2*id.Index+1)<<id.Height)
	buf[9] = id.Height
	return buf[:]
}

func u64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }
