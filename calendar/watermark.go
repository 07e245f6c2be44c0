package calendar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/tempel-ksi/tempel/ksi"
)

// The watermark is the calendar's durable memory of what it has answered,
// kept in a small file apart from the store. Pebble's WAL can lose its
// tail (a damaged or truncated log is replayed up to the damage, without
// an error), and a data directory can be replaced by an older copy; either
// would let the calendar append again seconds whose signatures it had
// already answered, with different leaves, and every such signature would
// stop verifying. So before any answer of second t leaves the process, t
// and the root after it are written here (after the store's synced
// commit, so the store is never behind the mark unless it lost data), and
// a store that opens behind its mark, or with another root at the mark,
// is refused until an operator accepts the loss (AcceptLoss).
//
// The file holds two copies of the mark in separate sectors, each with a
// sequence number and a CRC-32C; a write goes to the sector not holding
// the newest valid copy and is synced, so a torn write leaves the other.

// Mark is what the calendar has answered.
type Mark struct {
	// Last is the newest second whose signatures may have left the
	// process; 0 when none has.
	Last uint64
	// Root is the calendar root after Last.
	Root ksi.Imprint
	// Pub is the newest publication time served; 0 when none.
	Pub uint64
}

const (
	watermarkMagic   = "TEMPELWM"
	watermarkVersion = 1
	watermarkSector  = 512
	// magic, version, seq, last, pub, root length, root (up to 64-byte
	// digests), CRC-32C.
	watermarkRecord = 8 + 4 + 8 + 8 + 8 + 1 + 65 + 4
)

var crc32c = crc32.MakeTable(crc32.Castagnoli)

// ErrWatermarkDamaged: neither copy of the mark passes its checksum.
var ErrWatermarkDamaged = errors.New("calendar: watermark damaged")

// Watermark is the open watermark file.
type Watermark struct {
	path string

	mu   sync.Mutex // writers: held through the write and its fsync
	f    *os.File
	seq  uint64
	slot int // sector holding the newest valid copy
	mark Mark
	// cur is the mark for readers (Extend, the head, the publisher on
	// every request), who must not wait for a writer's fsync.
	cur atomic.Pointer[Mark]
}

// OpenWatermark opens the watermark file at path. found is false when the
// file did not exist or was empty; with create it is then created with a
// zero mark (for a new calendar), else w is nil: a calendar with seconds
// and no mark cannot tell what it answered.
func OpenWatermark(path string, create bool) (w *Watermark, found bool, err error) {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if errors.Is(err, os.ErrNotExist) {
		if !create {
			return nil, false, nil
		}
		return createWatermark(path)
	}
	if err != nil {
		return nil, false, fmt.Errorf("calendar: open watermark: %w", err)
	}
	w = &Watermark{path: path, f: f, slot: 1}
	if found, err = w.load(); err != nil || !found {
		f.Close()
		if err != nil || !create {
			return nil, false, err
		}
		return createWatermark(path)
	}
	return w, true, nil
}

// createWatermark writes a zero mark to a new file beside path and
// renames it into place, so that a crash while creating leaves no file
// or a complete one, never a damaged one that a new calendar would then
// refuse.
func createWatermark(path string) (*Watermark, bool, error) {
	tmp := path + ".new"
	f, err := os.OpenFile(tmp, os.O_RDWR|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, false, fmt.Errorf("calendar: create watermark: %w", err)
	}
	w := &Watermark{path: path, f: f, slot: 1}
	err = w.write(Mark{})
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		f.Close()
		os.Remove(tmp)
		return nil, false, fmt.Errorf("calendar: create watermark %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return w, false, nil
}

// Path returns the file's path.
func (w *Watermark) Path() string { return w.path }

// Mark returns the current mark.
func (w *Watermark) Mark() Mark {
	if m := w.cur.Load(); m != nil {
		return *m
	}
	return Mark{}
}

// Close closes the file.
func (w *Watermark) Close() error { return w.f.Close() }

// Answered records that second t, with root after it, may be answered.
// It never moves the mark back.
func (w *Watermark) Answered(t uint64, root ksi.Imprint) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t <= w.mark.Last && w.mark.Root != nil {
		return nil
	}
	m := w.mark
	m.Last, m.Root = t, root
	return w.write(m)
}

// Published records that the publication of time t is served.
func (w *Watermark) Published(t uint64) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if t <= w.mark.Pub {
		return nil
	}
	m := w.mark
	m.Pub = t
	return w.write(m)
}

// reset replaces the mark (AcceptLoss), whatever it was.
func (w *Watermark) reset(m Mark) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.write(m)
}

// write stores m in the sector not holding the newest copy and syncs.
func (w *Watermark) write(m Mark) error {
	if len(m.Root) > 65 {
		return fmt.Errorf("calendar: watermark: root of %d bytes", len(m.Root))
	}
	seq := w.seq + 1
	var b [watermarkRecord]byte
	copy(b[:8], watermarkMagic)
	binary.BigEndian.PutUint32(b[8:], watermarkVersion)
	binary.BigEndian.PutUint64(b[12:], seq)
	binary.BigEndian.PutUint64(b[20:], m.Last)
	binary.BigEndian.PutUint64(b[28:], m.Pub)
	b[36] = byte(len(m.Root))
	copy(b[37:102], m.Root)
	binary.BigEndian.PutUint32(b[102:], crc32.Checksum(b[:102], crc32c))
	slot := 1 - w.slot
	if _, err := w.f.WriteAt(b[:], int64(slot*watermarkSector)); err != nil {
		return fmt.Errorf("calendar: write watermark: %w", err)
	}
	if err := w.f.Sync(); err != nil {
		return fmt.Errorf("calendar: sync watermark: %w", err)
	}
	w.seq, w.slot = seq, slot
	w.mark = Mark{Last: m.Last, Root: append(ksi.Imprint(nil), m.Root...), Pub: m.Pub}
	w.publish()
	return nil
}

// publish makes w.mark the readers' mark. The root is never changed in
// place (write copies it), so readers may share it.
func (w *Watermark) publish() {
	m := w.mark
	w.cur.Store(&m)
}

// load reads the newest valid copy; found is false for an empty file.
func (w *Watermark) load() (found bool, err error) {
	buf := make([]byte, 2*watermarkSector)
	n, err := w.f.ReadAt(buf, 0)
	if err != nil && !errors.Is(err, io.EOF) {
		return false, fmt.Errorf("calendar: read watermark %s: %w", w.path, err)
	}
	if n == 0 {
		return false, nil
	}
	best := -1
	for slot := 0; slot < 2; slot++ {
		rec := buf[slot*watermarkSector : slot*watermarkSector+watermarkRecord]
		m, seq, ok := parseMark(rec)
		if ok && (best < 0 || seq > w.seq) {
			best, w.seq, w.mark = slot, seq, m
		}
	}
	if best < 0 {
		return false, fmt.Errorf("%w: %s: neither copy of the mark passes its checksum", ErrWatermarkDamaged, w.path)
	}
	w.slot = best
	w.publish()
	return true, nil
}

func parseMark(b []byte) (m Mark, seq uint64, ok bool) {
	if string(b[:8]) != watermarkMagic || binary.BigEndian.Uint32(b[8:]) != watermarkVersion ||
		binary.BigEndian.Uint32(b[102:]) != crc32.Checksum(b[:102], crc32c) || b[36] > 65 {
		return Mark{}, 0, false
	}
	m.Last = binary.BigEndian.Uint64(b[20:])
	m.Pub = binary.BigEndian.Uint64(b[28:])
	if n := int(b[36]); n > 0 {
		m.Root = append(ksi.Imprint(nil), b[37:37+n]...)
	}
	return m, binary.BigEndian.Uint64(b[12:]), true
}

// syncDir makes a new file's directory entry durable.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
