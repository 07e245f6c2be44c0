package calendar

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math/bits"
	"os"
	"sync"
	"sync/atomic"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/vfs"

	"github.com/tempel-ksi/tempel/ksi"
)

// The calendar hash tree (docs/design/formats.md#calendar-hash-chains) has one leaf per POSIX
// second; leaf index = the second. Its shape is fixed by the number of
// leaves: the root joins the largest perfect subtree on the left with the
// calendar tree of the remaining leaves on the right. So the tree over
// leaves 0..P is the ordered list of perfect subtrees ("peaks") given by
// the binary digits of P+1, folded from the right.
//
// Storage: every node of a completed perfect subtree is stored under
// (height, index) when its last leaf is appended; leaves are height 0.
// Nodes that lie entirely before the first second hold the empty leaf and
// are computed, never stored. With the peaks of the current tree kept in
// memory, appending a leaf reads nothing, and any root or chain costs
// O(log t) reads.

// Errors of the store. Callers map them to protocol status codes.
var (
	// ErrTimeTooOld: the second is before the calendar's first second.
	ErrTimeTooOld = errors.New("calendar: time before the calendar's first second")
	// ErrTimeTooNew: the second has not been appended yet.
	ErrTimeTooNew = errors.New("calendar: time after the calendar's last second")
	// ErrBadRange: a chain was asked from a leaf to an earlier root.
	ErrBadRange = errors.New("calendar: publication time before aggregation time")
	// ErrOutOfOrder: an append was not for the next second.
	ErrOutOfOrder = errors.New("calendar: append out of order")
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
const calendarAlg = ksi.SHA2_256

// imprintLen is the size of a stored node.
const imprintLen = 1 + sha256.Size

// EmptyLeaf is the leaf of a second without input: a SHA-256 imprint with
// an all-zero digest (docs/design/architecture.md#time).
var EmptyLeaf = ksi.Imprint(make([]byte, imprintLen))

func init() { EmptyLeaf[0] = byte(calendarAlg) }

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

	mu     sync.RWMutex
	has    bool
	first  uint64 // first second with a stored leaf
	last   uint64 // last appended second
	peaks  []peak // perfect subtrees of the tree over 0..last, left to right
	failed error

	empty [65]ksi.Imprint // empty perfect subtree of each height

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

type nodeID struct {
	height uint8
	index  uint64
}

type peak struct {
	id   nodeID
	hash ksi.Imprint
}

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
	s.empty[0] = EmptyLeaf
	for h := 1; h < len(s.empty); h++ {
		s.empty[h] = hashNode(s.empty[h-1], s.empty[h-1])
	}
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

// getNode reads a node's value through a pooled iterator.
func (s *Store) getNode(key []byte) ([]byte, error) {
	want := s.appends.Load()
	var ni *nodeIter
	select {
	case ni = <-s.iterPool:
		if ni.appends < want {
			ni.it.Close()
			ni = nil
		}
	default:
	}
	if ni == nil {
		it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixNode}, UpperBound: []byte{prefixNode + 1}})
		if err != nil {
			return nil, err
		}
		ni = &nodeIter{it: it, appends: want}
	}
	var v []byte
	if ni.it.SeekGE(key) && bytes.Equal(ni.it.Key(), key) {
		v = append([]byte(nil), ni.it.Value()...)
	}
	err := ni.it.Error()
	select {
	case s.iterPool <- ni:
	default:
		ni.it.Close()
	}
	if err != nil {
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
	first, errF := s.getMeta(metaFirst)
	last, errL := s.getMeta(metaLast)
	if errors.Is(errF, pebble.ErrNotFound) && errors.Is(errL, pebble.ErrNotFound) {
		return nil
	}
	if errF != nil || errL != nil {
		return fmt.Errorf("%w: first/last second missing: %v %v", ErrCorrupt, errF, errL)
	}
	s.first, s.last, s.has = binary.BigEndian.Uint64(first), binary.BigEndian.Uint64(last), true
	if s.last < s.first {
		return fmt.Errorf("%w: last second %d before first %d", ErrCorrupt, s.last, s.first)
	}
	peaks, err := s.peaksAt(s.last)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	s.peaks = peaks
	// The peaks must fold to the root saved with the last append, and
	// each stored peak must be the hash of its children.
	root, err := s.getMeta(metaRoot)
	if err != nil {
		return fmt.Errorf("%w: root of second %d missing: %v", ErrCorrupt, s.last, err)
	}
	if got := foldPeaks(peaks); !bytes.Equal(got, root) {
		return fmt.Errorf("%w: stored nodes give root %s, saved root %s", ErrCorrupt, got, ksi.Imprint(root))
	}
	for _, p := range peaks {
		if p.id.height == 0 || s.isEmpty(p.id) {
			continue
		}
		l, err1 := s.node(nodeID{p.id.height - 1, 2 * p.id.index})
		r, err2 := s.node(nodeID{p.id.height - 1, 2*p.id.index + 1})
		if err1 != nil || err2 != nil {
			return fmt.Errorf("%w: children of node %v: %v %v", ErrCorrupt, p.id, err1, err2)
		}
		if !bytes.Equal(hashNode(l, r), p.hash) {
			return fmt.Errorf("%w: node %v is not the hash of its children", ErrCorrupt, p.id)
		}
	}
	return nil
}

// Head returns the first and last appended seconds.
func (s *Store) Head() (first, last uint64, ok bool) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.first, s.last, s.has
}

// Failed returns the write error that stopped the store, if any.
func (s *Store) Failed() error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.failed
}

// Reads returns the number of node reads from Pebble so far.
func (s *Store) Reads() uint64 { return s.reads.Load() }

// Append appends leaf t (one deterministic state-machine step: the same
// calendar and the same (t, leaf) give the same new state) and returns the
// new root. The leaf and every node it completes are written in one batch
// with Sync before Append returns, so nothing derived from the new root can
// leave the process before it is durable.
func (s *Store) Append(t uint64, leaf ksi.Imprint) (ksi.Imprint, error) {
	return s.AppendRange(t, []ksi.Imprint{leaf}, true)
}

// AppendRange appends leaves for seconds t0, t0+1, … in one batch, synced
// when sync is set (filling empty seconds after a restart, bulk loading).
func (s *Store) AppendRange(t0 uint64, leaves []ksi.Imprint, sync bool) (root ksi.Imprint, err error) {
	if len(leaves) == 0 {
		return nil, errors.New("calendar: no leaves to append")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return nil, fmt.Errorf("%w: %v", ErrFailed, s.failed)
	}
	// Below the reserve nothing is written, so nothing is in doubt: the
	// append is refused and may be tried again once space is freed.
	if err := s.checkSpace(); err != nil {
		return nil, err
	}
	defer s.recoverWriteFailure(&err)
	if s.has && t0 != s.last+1 {
		return nil, fmt.Errorf("%w: next second is %d, got %d", ErrOutOfOrder, s.last+1, t0)
	}
	for i, l := range leaves {
		if len(l) != imprintLen || l.Alg() != calendarAlg {
			return nil, fmt.Errorf("calendar: leaf %d is not a SHA-256 imprint", t0+uint64(i))
		}
	}
	first := s.first
	peaks := s.peaks
	if !s.has {
		// The seconds before the first one are empty leaves: start from
		// the empty peaks of a tree over 0..t0-1.
		first = t0
		peaks = s.emptyPeaks(t0)
	}
	peaks = append([]peak(nil), peaks...)
	b := s.db.NewBatchWithSize(len(leaves) * 2 * (10 + imprintLen + 16))
	defer b.Close()
	var key [10]byte
	for i, l := range leaves {
		t := t0 + uint64(i)
		cur := peak{nodeID{0, t}, append(ksi.Imprint(nil), l...)}
		b.Set(nodeKey(&key, cur.id), cur.hash, nil)
		// Merge equal-height peaks: each merge completes one stored node.
		for len(peaks) > 0 && peaks[len(peaks)-1].id.height == cur.id.height {
			left := peaks[len(peaks)-1]
			peaks = peaks[:len(peaks)-1]
			cur = peak{nodeID{cur.id.height + 1, cur.id.index >> 1}, hashNode(left.hash, cur.hash)}
			b.Set(nodeKey(&key, cur.id), cur.hash, nil)
		}
		peaks = append(peaks, cur)
	}
	last := t0 + uint64(len(leaves)) - 1
	root = foldPeaks(peaks)
	b.Set(metaFirst, u64(first), nil)
	b.Set(metaLast, u64(last), nil)
	b.Set(metaRoot, root, nil)
	opt := pebble.NoSync
	if sync {
		opt = pebble.Sync
	}
	if err := b.Commit(opt); err != nil {
		// The write may or may not be on disk: refuse to go on from an
		// unknown state. Reopening reloads what is durable.
		s.failed = err
		s.log.Error("calendar append failed; store stopped until the server is restarted", "second", t0, "err", err)
		return nil, fmt.Errorf("%w: append %d: %v", ErrFailed, t0, err)
	}
	s.first, s.last, s.has, s.peaks = first, last, true, peaks
	s.appends.Add(1)
	return root, nil
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
	if err := s.checkRange(p, p); err != nil {
		return nil, err
	}
	peaks, err := s.peaksAt(p)
	if err != nil {
		return nil, err
	}
	return foldPeaks(peaks), nil
}

// Leaf returns the leaf of second t.
func (s *Store) Leaf(t uint64) (ksi.Imprint, error) {
	if err := s.checkRange(t, t); err != nil {
		return nil, err
	}
	return s.node(nodeID{0, t})
}

// Chain returns the calendar hash chain from leaf t to the root after
// second p, as a calendar chain element (publication time p, aggregation
// time t).
func (s *Store) Chain(t, p uint64) (*ksi.CalendarChain, error) {
	if p < t {
		return nil, fmt.Errorf("%w: %d < %d", ErrBadRange, p, t)
	}
	if err := s.checkRange(t, p); err != nil {
		return nil, err
	}
	input, err := s.node(nodeID{0, t})
	if err != nil {
		return nil, err
	}
	links, err := s.links(t, p)
	if err != nil {
		return nil, err
	}
	return ksi.NewCalendarChain(p, t, input, links)
}

func (s *Store) checkRange(t, p uint64) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	switch {
	case s.failed != nil:
		return fmt.Errorf("%w: %v", ErrFailed, s.failed)
	case !s.has:
		return ErrEmpty
	case t < s.first:
		return fmt.Errorf("%w: %d < %d", ErrTimeTooOld, t, s.first)
	case p > s.last:
		return fmt.Errorf("%w: %d > %d", ErrTimeTooNew, p, s.last)
	}
	return nil
}

// links computes the chain from leaf t to the root over 0..p, lowest link
// first (see the shape rule at the top of this file).
func (s *Store) links(t, p uint64) ([]ksi.CalendarLink, error) {
	ids := peakIDs(p)
	j := 0
	for ; j < len(ids); j++ {
		start := ids[j].index << ids[j].height
		if t < start+1<<ids[j].height {
			break
		}
	}
	h := ids[j].height
	links := make([]ksi.CalendarLink, 0, int(h)+len(ids))
	// Inside t's peak: one sibling per height.
	for l := uint8(0); l < h; l++ {
		idx := t >> l
		sib, err := s.node(nodeID{l, idx ^ 1})
		if err != nil {
			return nil, err
		}
		links = append(links, ksi.CalendarLink{Left: idx&1 == 0, Sibling: sib})
	}
	// Above it: the fold of the smaller peaks on the right, then each
	// larger peak on the left.
	if j+1 < len(ids) {
		right := make([]peak, 0, len(ids)-j-1)
		for _, id := range ids[j+1:] {
			n, err := s.node(id)
			if err != nil {
				return nil, err
			}
			right = append(right, peak{id, n})
		}
		links = append(links, ksi.CalendarLink{Left: true, Sibling: foldPeaks(right)})
	}
	for i := j - 1; i >= 0; i-- {
		n, err := s.node(ids[i])
		if err != nil {
			return nil, err
		}
		links = append(links, ksi.CalendarLink{Left: false, Sibling: n})
	}
	return links, nil
}

// peakIDs lists the perfect subtrees of the tree over leaves 0..p, left
// to right: one per binary digit of p+1.
func peakIDs(p uint64) []nodeID {
	n := p + 1
	ids := make([]nodeID, 0, bits.OnesCount64(n))
	var start uint64
	for h := 63; h >= 0; h-- {
		if n&(1<<h) != 0 {
			ids = append(ids, nodeID{uint8(h), start >> h})
			start += 1 << h
		}
	}
	return ids
}

func (s *Store) peaksAt(p uint64) ([]peak, error) {
	ids := peakIDs(p)
	out := make([]peak, len(ids))
	for i, id := range ids {
		n, err := s.node(id)
		if err != nil {
			return nil, err
		}
		out[i] = peak{id, n}
	}
	return out, nil
}

// emptyPeaks are the peaks of a tree whose leaves 0..t0-1 are all empty.
func (s *Store) emptyPeaks(t0 uint64) []peak {
	if t0 == 0 {
		return nil
	}
	ids := peakIDs(t0 - 1)
	out := make([]peak, len(ids))
	for i, id := range ids {
		out[i] = peak{id, s.empty[id.height]}
	}
	return out
}

// isEmpty reports whether node id lies entirely before the first second.
func (s *Store) isEmpty(id nodeID) bool {
	end := (id.index + 1) << id.height // exclusive; cannot overflow below 2^63 seconds
	return end <= s.first
}

// node returns a node's hash: computed for the empty region, from the
// cache for high nodes, else read from Pebble.
func (s *Store) node(id nodeID) (ksi.Imprint, error) {
	s.mu.RLock()
	first, has := s.first, s.has
	s.mu.RUnlock()
	if !has || (id.index+1)<<id.height <= first {
		return s.empty[id.height], nil
	}
	if id.height >= cacheMinHeight {
		s.cacheMu.RLock()
		n, ok := s.cache[id]
		s.cacheMu.RUnlock()
		if ok {
			return n, nil
		}
	}
	var key [10]byte
	s.reads.Add(1)
	v, err := s.getNode(nodeKey(&key, id))
	if err != nil {
		if errors.Is(err, pebble.ErrNotFound) {
			return nil, fmt.Errorf("%w: node (height %d, index %d) missing", ErrCorrupt, id.height, id.index)
		}
		return nil, fmt.Errorf("calendar: read node: %w", err)
	}
	n := ksi.Imprint(v)
	if len(n) != imprintLen {
		return nil, fmt.Errorf("%w: node (height %d, index %d) has %d bytes", ErrCorrupt, id.height, id.index, len(n))
	}
	if id.height >= cacheMinHeight {
		s.cacheMu.Lock()
		s.cache[id] = n
		s.cacheMu.Unlock()
	}
	return n, nil
}

func (s *Store) getMeta(k []byte) ([]byte, error) {
	v, closer, err := s.db.Get(k)
	if err != nil {
		return nil, err
	}
	defer closer.Close()
	return append([]byte(nil), v...), nil
}

// hashNode is one calendar step: SHA-256(left || right || 0xFF), whose
// algorithm is the right child's (docs/design/formats.md#calendar-hash-chains); Tempel's nodes are all
// SHA-256.
func hashNode(left, right ksi.Imprint) ksi.Imprint {
	var buf [2*imprintLen + 1]byte
	n := copy(buf[:], left)
	n += copy(buf[n:], right)
	buf[n] = ksi.CalendarStepByte
	sum := sha256.Sum256(buf[:n+1])
	return append(ksi.Imprint{byte(calendarAlg)}, sum[:]...)
}

// foldPeaks joins peaks from the right into the root.
func foldPeaks(peaks []peak) ksi.Imprint {
	if len(peaks) == 0 {
		return nil
	}
	root := peaks[len(peaks)-1].hash
	for i := len(peaks) - 2; i >= 0; i-- {
		root = hashNode(peaks[i].hash, root)
	}
	return root
}

// nodeKey orders nodes by their in-order position in the tree, (2i+1)·2^h,
// so the nodes of a perfect subtree are contiguous on disk and the low
// part of any chain lies in one or two blocks. The height byte follows
// to keep keys unique (position alone is, but it makes dumps readable).
func nodeKey(buf *[10]byte, id nodeID) []byte {
	buf[0] = prefixNode
	binary.BigEndian.PutUint64(buf[1:9], (2*id.index+1)<<id.height)
	buf[9] = id.height
	return buf[:]
}

func u64(x uint64) []byte { return binary.BigEndian.AppendUint64(nil, x) }
