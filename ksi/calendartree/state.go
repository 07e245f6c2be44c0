package calendartree

import (
	"bytes"
	"fmt"
	"math/bits"

	"github.com/tempel-ksi/tempel/ksi"
)

// State is what a calendar keeps in memory between appends: its first
// and last second, the peaks of the tree over 0..last and their root. The
// zero State is the calendar before its first append. A State is a value:
// [Append] returns a new one and never changes the one it is given, so a
// reader may keep using an old State while an append is being stored.
type State struct {
	first, last uint64
	peaks       []Node
	root        ksi.Imprint
}

// Empty reports whether nothing has been appended.
func (s State) Empty() bool { return len(s.peaks) == 0 }

// First returns the calendar's first second (0 when Empty).
func (s State) First() uint64 { return s.first }

// Last returns the last appended second (0 when Empty).
func (s State) Last() uint64 { return s.last }

// Root returns the root of the tree over 0..Last (nil when Empty).
func (s State) Root() ksi.Imprint { return s.root }

// Append is the calendar's state-machine step: it appends leaves for
// seconds t0, t0+1, … to the calendar s and returns the next State and
// every node to store (each leaf and each node it completes, in
// order). On the empty State, t0 becomes the first second and the seconds
// before it hold EmptyLeaf; otherwise t0 must follow s.Last. Each leaf
// must be an imprint of [Alg]. Append reads nothing and is deterministic:
// the same s and leaves give the same results on every replica, and a
// range gives what appending its seconds one by one gives.
func Append(s State, t0 uint64, leaves []ksi.Imprint) (State, []Node, error) {
	if len(leaves) == 0 {
		return State{}, nil, fmt.Errorf("calendartree: no leaves to append")
	}
	if !s.Empty() && t0 != s.last+1 {
		return State{}, nil, fmt.Errorf("%w: next second is %d, got %d", ErrOutOfOrder, s.last+1, t0)
	}
	n := uint64(len(leaves))
	if t0 > MaxSecond || n-1 > MaxSecond-t0 {
		return State{}, nil, fmt.Errorf("%w: seconds %d..%d+%d beyond %d", ErrRange, t0, t0, n-1, uint64(MaxSecond))
	}
	for i, l := range leaves {
		if !validNode(l) {
			return State{}, nil, fmt.Errorf("%w: second %d", ErrBadLeaf, t0+uint64(i))
		}
	}
	last := t0 + n - 1
	first, old := s.first, s.peaks
	if s.Empty() {
		first, old = t0, emptyPeaks(t0)
	}
	// One allocation for every hash written: a bulk append of days of
	// seconds would otherwise make one per node.
	count := nodesCompleted(t0, last)
	slab := make([]byte, count*nodeLen)
	nodes := make([]Node, 0, count)
	peaks := make([]Node, len(old), len(old)+1)
	copy(peaks, old)
	h := hashers.Get().(*ksi.Hasher)
	defer hashers.Put(h)
	for i, l := range leaves {
		cur := Node{NodeID{0, t0 + uint64(i)}, append(ksi.Imprint(slab[:0:nodeLen]), l...)}
		slab = slab[nodeLen:]
		nodes = append(nodes, cur)
		// Merge equal-height peaks: each merge completes one stored node.
		for len(peaks) > 0 && peaks[len(peaks)-1].ID.Height == cur.ID.Height {
			left := peaks[len(peaks)-1]
			peaks = peaks[:len(peaks)-1]
			hash, err := join(h, left.Hash, cur.Hash, ksi.Imprint(slab[:0:nodeLen]))
			if err != nil {
				return State{}, nil, err
			}
			slab = slab[nodeLen:]
			cur = Node{NodeID{cur.ID.Height + 1, cur.ID.Index >> 1}, hash}
			nodes = append(nodes, cur)
		}
		peaks = append(peaks, cur)
	}
	root, err := foldNodes(h, peaks)
	if err != nil {
		return State{}, nil, err
	}
	return State{first: first, last: last, peaks: peaks, root: root}, nodes, nil
}

// nodesCompleted counts the nodes appending leaves t0..last writes: the
// leaves, and at each height h ≥ 1 the nodes whose last leaf is among
// them, one per multiple of 2^h in t0+1..last+1.
func nodesCompleted(t0, last uint64) int {
	n := last - t0 + 1
	for h := 1; h <= maxHeight; h++ {
		n += (last+1)>>h - t0>>h
	}
	return int(n)
}

// emptyPeaks are the peaks of a tree whose leaves 0..t0-1 are all empty.
func emptyPeaks(t0 uint64) []Node {
	if t0 == 0 {
		return nil
	}
	ids := peakIDs(make([]NodeID, 0, bits.OnesCount64(t0)), t0-1)
	out := make([]Node, len(ids))
	for i, id := range ids {
		out[i] = Node{id, empty[id.Height]}
	}
	return out
}

func foldNodes(h *ksi.Hasher, nodes []Node) (ksi.Imprint, error) {
	hashes := make([]ksi.Imprint, len(nodes))
	for i, n := range nodes {
		hashes[i] = n.Hash
	}
	return fold(h, hashes)
}

// Load rebuilds the State of a calendar holding seconds first..last from
// its stored nodes: it reads the peaks of the tree over 0..last and
// checks that each stored peak is the hash of its children, so damage to
// the nodes an append builds on is found before anything is appended.
// The caller compares [State.Root] with the root it saved.
func Load(r NodeReader, first, last uint64) (State, error) {
	if last < first || last > MaxSecond {
		return State{}, fmt.Errorf("%w: calendar of seconds %d..%d", ErrRange, first, last)
	}
	ids := peakIDs(make([]NodeID, 0, bits.OnesCount64(last+1)), last)
	hashes, err := read(r, first, ids)
	if err != nil {
		return State{}, err
	}
	peaks := make([]Node, len(ids))
	var children []NodeID
	for i, id := range ids {
		peaks[i] = Node{id, hashes[i]}
		if id.Height > 0 && id.end() > first {
			children = append(children, NodeID{id.Height - 1, 2 * id.Index}, NodeID{id.Height - 1, 2*id.Index + 1})
		}
	}
	kids, err := read(r, first, children)
	if err != nil {
		return State{}, err
	}
	h := hashers.Get().(*ksi.Hasher)
	defer hashers.Put(h)
	k := 0
	for _, p := range peaks {
		if p.ID.Height == 0 || p.ID.end() <= first {
			continue
		}
		got, err := h.CalendarStep(kids[k], kids[k+1])
		if err != nil {
			return State{}, fmt.Errorf("calendartree: %w", err)
		}
		if !bytes.Equal(got, p.Hash) {
			return State{}, fmt.Errorf("%w: node %v is not the hash of its children", ErrBadNode, p.ID)
		}
		k += 2
	}
	root, err := fold(h, hashes)
	if err != nil {
		return State{}, err
	}
	return State{first: first, last: last, peaks: peaks, root: root}, nil
}
