package calendartree

import (
	"fmt"
	"math/bits"

	"github.com/tempel-ksi/tempel/ksi"
)

// checkRange refuses seconds outside first..last and p < t.
func (s State) checkRange(t, p uint64) error {
	switch {
	case s.Empty():
		return fmt.Errorf("%w: the calendar is empty", ErrRange)
	case p < t:
		return fmt.Errorf("%w: root %d before leaf %d", ErrRange, p, t)
	case t < s.first || p > s.last:
		return fmt.Errorf("%w: %d..%d outside the calendar's %d..%d", ErrRange, t, p, s.first, s.last)
	}
	return nil
}

// RootAt returns the root of the tree over 0..p, reading its peaks. The
// root after the last second is also [State.Root], without reads.
func (s State) RootAt(r NodeReader, p uint64) (ksi.Imprint, error) {
	if err := s.checkRange(p, p); err != nil {
		return nil, err
	}
	ids := peakIDs(make([]NodeID, 0, bits.OnesCount64(p+1)), p)
	hashes, err := read(r, s.first, ids)
	if err != nil {
		return nil, err
	}
	h := hashers.Get().(*ksi.Hasher)
	defer hashers.Put(h)
	return fold(h, hashes)
}

// Leaf returns the leaf of second t.
func (s State) Leaf(r NodeReader, t uint64) (ksi.Imprint, error) {
	if err := s.checkRange(t, t); err != nil {
		return nil, err
	}
	hashes, err := read(r, s.first, []NodeID{{0, t}})
	if err != nil {
		return nil, err
	}
	return hashes[0], nil
}

// Chain returns the calendar hash chain from leaf t to the root of the
// tree over 0..p (publication time p, aggregation time t), reading the
// leaf and the O(log p) nodes beside its path in one call.
func (s State) Chain(r NodeReader, t, p uint64) (*ksi.CalendarChain, error) {
	if err := s.checkRange(t, p); err != nil {
		return nil, err
	}
	peaks := peakIDs(make([]NodeID, 0, bits.OnesCount64(p+1)), p)
	j := 0 // t's peak
	for t >= peaks[j].end() {
		j++
	}
	height := int(peaks[j].Height)
	right, left := peaks[j+1:], peaks[:j]
	// Read, in order: the leaf, its sibling at each height inside its
	// peak, the smaller peaks on the right, the larger ones on the left.
	ids := make([]NodeID, 0, 1+height+len(right)+len(left))
	ids = append(ids, NodeID{0, t})
	for l := range height {
		ids = append(ids, NodeID{uint8(l), t>>l ^ 1})
	}
	ids = append(ids, right...)
	ids = append(ids, left...)
	hashes, err := read(r, s.first, ids)
	if err != nil {
		return nil, err
	}
	links := make([]ksi.CalendarLink, 0, height+1+len(left))
	for l := range height {
		links = append(links, ksi.CalendarLink{Left: t>>l&1 == 0, Sibling: hashes[1+l]})
	}
	// Above t's peak: the fold of the smaller peaks on the right, then
	// each larger peak on the left.
	if len(right) > 0 {
		h := hashers.Get().(*ksi.Hasher)
		sib, err := fold(h, hashes[1+height:1+height+len(right)])
		hashers.Put(h)
		if err != nil {
			return nil, err
		}
		links = append(links, ksi.CalendarLink{Left: true, Sibling: sib})
	}
	lefts := hashes[1+height+len(right):]
	for i := len(lefts) - 1; i >= 0; i-- {
		links = append(links, ksi.CalendarLink{Left: false, Sibling: lefts[i]})
	}
	return ksi.NewCalendarChain(p, t, hashes[0], links)
}
