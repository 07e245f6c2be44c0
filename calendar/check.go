package calendar

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tempel-ksi/tempel/ksi"
)

// Check recomputes the whole calendar from its leaves and compares every
// stored node and the saved root: a full consistency check (no gap, no
// duplicate, no node that disagrees with its leaves). It reads every key,
// so it is for tests and operators, not the serving path.
func (s *Store) Check() error {
	first, last, ok := s.Head()
	if !ok {
		return nil
	}
	// Every node key must belong to a second ≤ last.
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixNode}, UpperBound: []byte{prefixNode + 1}})
	if err != nil {
		return err
	}
	stored := 0
	for it.First(); it.Valid(); it.Next() {
		k := it.Key()
		if len(k) != 10 {
			it.Close()
			return fmt.Errorf("%w: node key of %d bytes", ErrCorrupt, len(k))
		}
		h := k[9]
		pos := uint64(0)
		for _, c := range k[1:9] {
			pos = pos<<8 | uint64(c)
		}
		idx := (pos>>h - 1) / 2
		lastLeaf := (idx+1)<<h - 1
		if lastLeaf > last || lastLeaf < first {
			it.Close()
			return fmt.Errorf("%w: node (height %d, index %d) beyond the calendar's seconds %d..%d", ErrCorrupt, h, idx, first, last)
		}
		stored++
	}
	it.Close()
	peaks := s.emptyPeaks(first)
	want := 0
	for t := first; t <= last; t++ {
		leaf, err := s.node(nodeID{0, t})
		if err != nil {
			return fmt.Errorf("leaf %d: %w", t, err)
		}
		cur := peak{nodeID{0, t}, leaf}
		want++
		for len(peaks) > 0 && peaks[len(peaks)-1].id.height == cur.id.height {
			left := peaks[len(peaks)-1]
			peaks = peaks[:len(peaks)-1]
			cur = peak{nodeID{cur.id.height + 1, cur.id.index >> 1}, hashNode(left.hash, cur.hash)}
			got, err := s.node(cur.id)
			if err != nil {
				return err
			}
			want++
			if !bytes.Equal(got, cur.hash) {
				return fmt.Errorf("%w: node (height %d, index %d) disagrees with its leaves", ErrCorrupt, cur.id.height, cur.id.index)
			}
		}
		peaks = append(peaks, cur)
	}
	if stored != want {
		return fmt.Errorf("%w: %d nodes stored, the leaves make %d", ErrCorrupt, stored, want)
	}
	root, err := s.getMeta(metaRoot)
	if err != nil {
		return err
	}
	if !bytes.Equal(foldPeaks(peaks), root) {
		return fmt.Errorf("%w: saved root differs from the recomputed one", ErrCorrupt)
	}
	return nil
}

// CheckPublications checks every stored publication against the calendar
// (its hash is the root at its time) and the stored publications file
// (it parses and lists each of them with the same value).
func (s *Store) CheckPublications() (int, error) {
	pubs, file, err := s.loadPublications()
	if err != nil {
		return 0, err
	}
	for _, p := range pubs {
		if !s.publicationMatches(p) {
			return 0, fmt.Errorf("%w: publication of %d (%s) differs from the calendar root at that second", ErrCorrupt, p.Data.Time, utc(p.Data.Time))
		}
	}
	if file == nil {
		if len(pubs) > 0 {
			return 0, fmt.Errorf("%w: %d publications but no stored publications file", ErrCorrupt, len(pubs))
		}
		return 0, nil
	}
	f, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		return 0, fmt.Errorf("%w: stored publications file: %v", ErrCorrupt, err)
	}
	for _, p := range pubs {
		in := f.PublicationAt(p.Data.Time)
		if in == nil || !in.Data.Hash.Equal(p.Data.Hash) {
			return 0, fmt.Errorf("%w: publication of %d missing from the stored publications file or different there", ErrCorrupt, p.Data.Time)
		}
	}
	return len(pubs), nil
}
