package calendar

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math/bits"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// A replicated calendar agrees, through its log, on each second's
// input: the entry for second t carries everything every member needs to
// compute leaf t with the state-machine step (ksi/calendarstep), so
// nothing a member computes locally influences the leaf
// (docs/design/replication.md#the-log-entry-for-second-t).
//
// Encoding, version 1 (written by hand: the bytes in the log are the
// authority and are never re-encoded):
//
//	"TS" version(1) kind(1)
//	kind 1, second:   t(8) proposal(8) prev last(8) prev root length(1) prev root
//	                  count(uvarint) count × [ imprint(33) level(1) meta length(uvarint) meta ]
//
// Integers are big-endian; uvarints are minimal. An unknown version or kind, a short or long
// entry, or a root that is not a SHA-256 imprint is an error: the member
// stops instead of guessing, and as the log is the same everywhere, so
// does every member.
const (
	entryMagic   = "TS"
	entryVersion = 1
	kindSecond   = 1
	// maxEntryMeta bounds one root's metadata in an entry: the calendar
	// writes a client id and a request time, far less.
	maxEntryMeta = 1024
)

// MaxEntryBytes bounds the roots of one second's entry, below the raft
// member's largest proposal (internal/raftnode.DefaultMaxProposalBytes,
// 512 KiB) with room for the entry's head: a replicated second takes
// roots until its entry is full, and refuses the next one at once.
const MaxEntryBytes = 480 << 10

// entryRootBytes is the size of one root in an entry.
func entryRootBytes(r round.Request) int {
	return imprintLen + 1 + uvarintLen(uint64(len(r.Meta))) + len(r.Meta)
}

// uvarintLen is the size of v's minimal uvarint encoding, without
// encoding it (it runs per root on submission and on apply).
func uvarintLen(v uint64) int { return (bits.Len64(v|1) + 6) / 7 }

// ErrBadEntry: a log entry that this version cannot apply.
var ErrBadEntry = errors.New("calendar: bad log entry")

// SecondEntry is the log entry for second T.
type SecondEntry struct {
	T uint64
	// Proposal identifies the proposing member's attempt: only the
	// member whose proposal was applied answers its callers.
	Proposal uint64
	// PrevLast and PrevRoot are the proposer's calendar when it proposed
	// the entry: its last second and the root after it (nil for an empty
	// calendar). A member applying the entry must hold the same, or the
	// calendars have diverged and it stops (Service.Apply).
	PrevLast uint64
	PrevRoot ksi.Imprint
	Roots    []round.Request
}

// Encode appends the entry's bytes to dst.
func (e *SecondEntry) Encode(dst []byte) ([]byte, error) {
	dst = append(dst, entryMagic...)
	dst = append(dst, entryVersion, kindSecond)
	dst = binary.BigEndian.AppendUint64(dst, e.T)
	dst = binary.BigEndian.AppendUint64(dst, e.Proposal)
	dst = binary.BigEndian.AppendUint64(dst, e.PrevLast)
	if e.PrevRoot != nil && (len(e.PrevRoot) != imprintLen || e.PrevRoot.Alg() != calendarAlg) {
		return nil, fmt.Errorf("%w: previous root is not a SHA-256 imprint", ErrBadEntry)
	}
	dst = append(dst, byte(len(e.PrevRoot)))
	dst = append(dst, e.PrevRoot...)
	dst = binary.AppendUvarint(dst, uint64(len(e.Roots)))
	for i, r := range e.Roots {
		if len(r.Hash) != imprintLen || r.Hash.Alg() != calendarAlg {
			return nil, fmt.Errorf("%w: root %d is not a SHA-256 imprint", ErrBadEntry, i)
		}
		if len(r.Meta) > maxEntryMeta {
			return nil, fmt.Errorf("%w: root %d has %d bytes of metadata, at most %d", ErrBadEntry, i, len(r.Meta), maxEntryMeta)
		}
		dst = append(dst, r.Hash...)
		dst = append(dst, r.Level)
		dst = binary.AppendUvarint(dst, uint64(len(r.Meta)))
		dst = append(dst, r.Meta...)
	}
	return dst, nil
}

// DecodeSecondEntry parses an entry written by Encode. The roots' hashes
// and metadata alias b.
func DecodeSecondEntry(b []byte) (*SecondEntry, error) {
	const head = len(entryMagic) + 2
	kind, err := entryKind(b)
	if err != nil {
		return nil, err
	}
	if kind != kindSecond {
		return nil, fmt.Errorf("%w: kind %d is not a second", ErrBadEntry, kind)
	}
	b = b[head:]
	if len(b) < 16 {
		return nil, fmt.Errorf("%w: truncated", ErrBadEntry)
	}
	e := &SecondEntry{T: binary.BigEndian.Uint64(b), Proposal: binary.BigEndian.Uint64(b[8:])}
	b = b[16:]
	if len(b) < 9 {
		return nil, fmt.Errorf("%w: truncated", ErrBadEntry)
	}
	e.PrevLast = binary.BigEndian.Uint64(b)
	switch n := int(b[8]); {
	case n == 0:
		b = b[9:]
	case n == imprintLen && len(b) >= 9+n && ksi.HashAlg(b[9]) == calendarAlg:
		e.PrevRoot = ksi.Imprint(b[9 : 9+n : 9+n])
		b = b[9+n:]
	default:
		return nil, fmt.Errorf("%w: bad previous root", ErrBadEntry)
	}
	n, k := uvarint(b)
	// Each root takes at least imprint, level and a length byte: a count
	// the bytes cannot hold is refused before anything is allocated.
	if k <= 0 || n > uint64(len(b)-k)/(imprintLen+2) {
		return nil, fmt.Errorf("%w: bad root count", ErrBadEntry)
	}
	b = b[k:]
	e.Roots = make([]round.Request, n)
	for i := range e.Roots {
		if len(b) < imprintLen+2 {
			return nil, fmt.Errorf("%w: root %d truncated", ErrBadEntry, i)
		}
		h := ksi.Imprint(b[:imprintLen:imprintLen])
		if h.Alg() != calendarAlg {
			return nil, fmt.Errorf("%w: root %d is not a SHA-256 imprint", ErrBadEntry, i)
		}
		level := b[imprintLen]
		b = b[imprintLen+1:]
		m, k := uvarint(b)
		if k <= 0 || m > maxEntryMeta || m > uint64(len(b)-k) {
			return nil, fmt.Errorf("%w: root %d: bad metadata length", ErrBadEntry, i)
		}
		b = b[k:]
		var meta []byte
		if m > 0 {
			meta = b[:m:m]
		}
		b = b[m:]
		e.Roots[i] = round.Request{Hash: h, Level: level, Meta: meta}
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d bytes after the last root", ErrBadEntry, len(b))
	}
	return e, nil
}

// uvarint reads a minimally encoded uvarint (k ≤ 0 when there is none),
// so that an entry has exactly one encoding.
func uvarint(b []byte) (uint64, int) {
	v, k := binary.Uvarint(b)
	if k > 0 && k != uvarintLen(v) {
		return 0, -1
	}
	return v, k
}
