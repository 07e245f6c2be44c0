package calendar

import (
	"bytes"
	"fmt"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
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
	// Recompute the tree with the append step, a chunk of leaves at a
	// time, and compare every node it would write with the stored one.
	const chunk = 1 << 12
	r := nodeReader{s}
	var st calendartree.State
	want := 0
	ids := make([]calendartree.NodeID, 0, chunk)
	for t0 := first; t0 <= last; {
		ids = ids[:0]
		for t := t0; t <= last && len(ids) < chunk; t++ {
			ids = append(ids, calendartree.NodeID{Height: 0, Index: t})
		}
		leaves := make([]ksi.Imprint, len(ids))
		if err := r.ReadNodes(ids, leaves); err != nil {
			return fmt.Errorf("leaves from %d: %w", t0, err)
		}
		next, nodes, err := calendartree.Append(st, t0, leaves)
		if err != nil {
			return fmt.Errorf("%w: leaves from %d: %v", ErrCorrupt, t0, err)
		}
		want += len(nodes)
		ids = ids[:0]
		for _, n := range nodes {
			ids = append(ids, n.ID)
		}
		got := make([]ksi.Imprint, len(ids))
		if err := r.ReadNodes(ids, got); err != nil {
			return err
		}
		for i, n := range nodes {
			if !bytes.Equal(got[i], n.Hash) {
				return fmt.Errorf("%w: node (height %d, index %d) disagrees with its leaves", ErrCorrupt, n.ID.Height, n.ID.Index)
			}
		}
		st, t0 = next, next.Last()+1
	}
	if stored != want {
		return fmt.Errorf("%w: %d nodes stored, the leaves make %d", ErrCorrupt, stored, want)
	}
	root, err := s.getMeta(metaRoot)
	if err != nil {
		return err
	}
	if !bytes.Equal(st.Root(), root) {
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
