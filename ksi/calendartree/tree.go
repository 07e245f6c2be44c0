package calendartree

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"sync"

	"github.com/tempel-ksi/tempel/ksi"
)

// Alg is the hash algorithm of every calendar node: leaves must be
// imprints of it, and every node joined from them is one.
const Alg = ksi.SHA2_256

// nodeLen is the size of a node's imprint.
const nodeLen = 1 + sha256.Size

// MaxSecond is the last second a calendar may hold (the largest int64, as
// time.Time counts seconds): below it, a node's range of leaves and the
// peaks of any tree fit in uint64 arithmetic.
const MaxSecond = 1<<63 - 1

// maxHeight bounds node heights: the tree over 0..MaxSecond is one peak
// of height 63.
const maxHeight = 63

// Errors of the calendar arithmetic.
var (
	// ErrOutOfOrder: an append was not for the second after the last one.
	ErrOutOfOrder = errors.New("calendartree: append out of order")
	// ErrBadLeaf: a leaf is not an imprint of [Alg].
	ErrBadLeaf = errors.New("calendartree: leaf is not a SHA-256 imprint")
	// ErrRange: a second is outside the calendar, or a chain was asked
	// from a leaf to an earlier root.
	ErrRange = errors.New("calendartree: second out of range")
	// ErrBadNode: a [NodeReader] returned something that is not a node:
	// the storage behind it is damaged or the reader is wrong.
	ErrBadNode = errors.New("calendartree: bad node from storage")
)

// NodeID names the perfect subtree of height Height over leaves
// Index·2^Height … (Index+1)·2^Height − 1.
type NodeID struct {
	Height uint8
	Index  uint64
}

// end returns one past the node's last leaf.
func (id NodeID) end() uint64 { return (id.Index + 1) << id.Height }

// String formats the id as the store's messages name nodes.
func (id NodeID) String() string { return fmt.Sprintf("(height %d, index %d)", id.Height, id.Index) }

// Node is a node and its hash. Hashes returned by this package are shared
// with the [State]: callers must not modify them.
type Node struct {
	ID   NodeID
	Hash ksi.Imprint
}

// NodeReader reads stored nodes: the caller's storage, defined here so
// that the arithmetic does no I/O of its own.
type NodeReader interface {
	// ReadNodes sets hashes[i] to the stored hash of node ids[i] (the two
	// have the same length). Each id is a node that [Append] returned for
	// storing; one that cannot be found is an error (the storage is
	// damaged), never a nil hash.
	ReadNodes(ids []NodeID, hashes []ksi.Imprint) error
}

// empty[h] is the hash of a perfect subtree of height h whose leaves are
// all EmptyLeaf.
var empty = func() (e [maxHeight + 1]ksi.Imprint) {
	e[0] = make(ksi.Imprint, nodeLen)
	e[0][0] = byte(Alg)
	var h ksi.Hasher
	for i := 1; i < len(e); i++ {
		out, err := h.CalendarStep(e[i-1], e[i-1])
		if err != nil {
			panic("calendartree: " + err.Error()) // SHA-256 is always available
		}
		e[i] = append(ksi.Imprint(nil), out...)
	}
	return e
}()

// EmptyLeaf returns the leaf of a second without input: an imprint of
// [Alg] with an all-zero digest.
func EmptyLeaf() ksi.Imprint { return append(ksi.Imprint(nil), empty[0]...) }

// hashers holds the Hashers of concurrent callers: a Hasher reuses its
// buffers between steps but is not safe for concurrent use.
var hashers = sync.Pool{New: func() any { return new(ksi.Hasher) }}

// NodeHash returns the node whose children are left and right: the
// calendar step of package ksi.
func NodeHash(left, right ksi.Imprint) (ksi.Imprint, error) {
	h := hashers.Get().(*ksi.Hasher)
	defer hashers.Put(h)
	return join(h, left, right, nil)
}

// join computes the node over left and right into dst (a fresh slice
// when dst is nil).
func join(h *ksi.Hasher, left, right, dst ksi.Imprint) (ksi.Imprint, error) {
	out, err := h.CalendarStep(left, right)
	if err != nil {
		return nil, fmt.Errorf("calendartree: %w", err)
	}
	return append(dst[:0], out...), nil
}

// fold joins hashes (peaks, left to right) from the right into one root.
func fold(h *ksi.Hasher, hashes []ksi.Imprint) (ksi.Imprint, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	if len(hashes) == 1 {
		return hashes[0], nil
	}
	root := hashes[len(hashes)-1]
	for i := len(hashes) - 2; i >= 0; i-- {
		// The step's result lives in h until its next step, which reads
		// its inputs before writing: only the final root is copied.
		var err error
		if root, err = h.CalendarStep(hashes[i], root); err != nil {
			return nil, fmt.Errorf("calendartree: %w", err)
		}
	}
	return append(ksi.Imprint(nil), root...), nil
}

// peakIDs appends to dst the peaks of the tree over leaves 0..p, left to
// right: one per binary digit of p+1, largest first. p must be at most
// MaxSecond.
func peakIDs(dst []NodeID, p uint64) []NodeID {
	n := p + 1
	var start uint64
	for h := maxHeight; h >= 0; h-- {
		if n&(1<<h) != 0 {
			dst = append(dst, NodeID{uint8(h), start >> h})
			start += 1 << h
		}
	}
	return dst
}

// validNode reports whether b is an imprint of Alg.
func validNode(b ksi.Imprint) bool { return len(b) == nodeLen && ksi.HashAlg(b[0]) == Alg }

// read returns the hashes of ids in a calendar whose first second is
// first: nodes before it are computed, the others read in one call.
func read(r NodeReader, first uint64, ids []NodeID) ([]ksi.Imprint, error) {
	out := make([]ksi.Imprint, len(ids))
	stored := ids
	for _, id := range ids {
		if id.end() <= first {
			stored = nil
			break
		}
	}
	if stored == nil { // some are empty: read only the others
		stored = make([]NodeID, 0, len(ids))
		for _, id := range ids {
			if id.end() > first {
				stored = append(stored, id)
			}
		}
	}
	if len(stored) > 0 {
		got := out[:len(stored)]
		if err := r.ReadNodes(stored, got); err != nil {
			return nil, err
		}
		for i, g := range got {
			if !validNode(g) {
				return nil, fmt.Errorf("%w: node %v is not a SHA-256 imprint", ErrBadNode, stored[i])
			}
		}
	}
	if len(stored) == len(ids) {
		return out, nil
	}
	// Spread the read hashes to their places, from the end: a stored
	// node's place is never before its index among the stored ones.
	j := len(stored) - 1
	for i := len(ids) - 1; i >= 0; i-- {
		if ids[i].end() <= first {
			out[i] = empty[ids[i].Height]
		} else {
			out[i] = out[j]
			j--
		}
	}
	return out, nil
}
