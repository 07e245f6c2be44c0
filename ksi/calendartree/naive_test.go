package calendartree

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// naive is the calendar tree from its definition (docs/design/formats.md#calendar-hash-chains), written
// independently of the package: the tree over leaves [lo, hi) joins the
// tree over the largest power of two of them on the left with the tree
// over the rest on the right; a node is SHA-256(left || right || 0xFF)
// (§4.6), written out here rather than taken from ksi. Leaves before
// first are the empty leaf. Subtree hashes are memoised, so a query costs
// O(log) once its subtrees are known.
type naive struct {
	first  uint64
	leaves []ksi.Imprint // leaves[i] is second first+i
	memo   map[[2]uint64]ksi.Imprint
	empty  map[uint64]ksi.Imprint // tree over n empty leaves
}

func newNaive(first uint64) *naive {
	return &naive{first: first, memo: map[[2]uint64]ksi.Imprint{}, empty: map[uint64]ksi.Imprint{}}
}

func naiveStep(l, r ksi.Imprint) ksi.Imprint {
	buf := append(append(append([]byte(nil), l...), r...), 0xFF)
	sum := sha256.Sum256(buf)
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, sum[:]...)
}

// split returns the size of the left subtree of a tree over n > 1 leaves.
func split(n uint64) uint64 { return 1 << (bits.Len64(n-1) - 1) }

func (n *naive) last() uint64 { return n.first + uint64(len(n.leaves)) - 1 }

func (n *naive) emptyRoot(size uint64) ksi.Imprint {
	if size == 1 {
		return append(ksi.Imprint{byte(ksi.SHA2_256)}, make([]byte, 32)...)
	}
	if r, ok := n.empty[size]; ok {
		return r
	}
	k := split(size)
	r := naiveStep(n.emptyRoot(k), n.emptyRoot(size-k))
	n.empty[size] = r
	return r
}

// root returns the root of the tree over leaves [lo, hi).
func (n *naive) root(lo, hi uint64) ksi.Imprint {
	switch {
	case hi <= n.first:
		return n.emptyRoot(hi - lo)
	case hi-lo == 1:
		return n.leaves[lo-n.first]
	}
	key := [2]uint64{lo, hi}
	if r, ok := n.memo[key]; ok {
		return r
	}
	k := split(hi - lo)
	r := naiveStep(n.root(lo, lo+k), n.root(lo+k, hi))
	n.memo[key] = r
	return r
}

// chain returns the links from leaf t to the root over 0..p, lowest first.
func (n *naive) chain(t, p uint64) []ksi.CalendarLink {
	var links []ksi.CalendarLink
	lo, hi := uint64(0), p+1
	for hi-lo > 1 {
		k := split(hi - lo)
		if t < lo+k {
			links = append(links, ksi.CalendarLink{Left: true, Sibling: n.root(lo+k, hi)})
			hi = lo + k
		} else {
			links = append(links, ksi.CalendarLink{Left: false, Sibling: n.root(lo, lo+k)})
			lo += k
		}
	}
	slices.Reverse(links)
	return links
}

// memStore is a NodeReader over a map. It fails the test when asked for
// a node before the first second (those are computed, never stored) or
// written twice, and errors for a node never written.
type memStore struct {
	t     testing.TB
	first uint64
	nodes map[NodeID]ksi.Imprint
	reads int
}

func newMemStore(t testing.TB, first uint64) *memStore {
	return &memStore{t: t, first: first, nodes: map[NodeID]ksi.Imprint{}}
}

func (m *memStore) ReadNodes(ids []NodeID, out []ksi.Imprint) error {
	if len(ids) != len(out) {
		m.t.Fatalf("ReadNodes of %d ids into %d hashes", len(ids), len(out))
	}
	for i, id := range ids {
		if id.end() <= m.first {
			m.t.Errorf("read of node %v, which lies before the first second %d", id, m.first)
		}
		h, ok := m.nodes[id]
		if !ok {
			return fmt.Errorf("memstore: node %v missing", id)
		}
		m.reads++
		out[i] = h
	}
	return nil
}

func (m *memStore) write(nodes []Node) {
	for _, n := range nodes {
		if _, ok := m.nodes[n.ID]; ok {
			m.t.Errorf("node %v written twice", n.ID)
		}
		if n.ID.end() <= m.first {
			m.t.Errorf("node %v lies before the first second %d but was returned for storing", n.ID, m.first)
		}
		m.nodes[n.ID] = n.Hash
	}
}

// leafAt is a deterministic leaf for second t; every seventh second is
// empty, as seconds without input are.
func leafAt(t uint64, salt byte) ksi.Imprint {
	if (t+uint64(salt))%7 == 0 {
		return EmptyLeaf()
	}
	sum := sha256.Sum256(binary.BigEndian.AppendUint64([]byte{salt}, t))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, sum[:]...)
}

// hasher verifies chains in checkChain (tests of this package run one at
// a time).
var hasher ksi.Hasher

// checkChain compares the package's chain from t to p with the naive one.
func checkChain(t testing.TB, st State, r NodeReader, ref *naive, t0, p uint64) {
	t.Helper()
	c, err := st.Chain(r, t0, p)
	if err != nil {
		t.Fatalf("chain %d→%d: %v", t0, p, err)
	}
	want := ref.chain(t0, p)
	if len(c.Links) != len(want) {
		t.Fatalf("chain %d→%d (first %d): %d links, want %d", t0, p, ref.first, len(c.Links), len(want))
	}
	for i := range want {
		if c.Links[i].Left != want[i].Left || !c.Links[i].Sibling.Equal(want[i].Sibling) {
			t.Fatalf("chain %d→%d (first %d): link %d is (left %v, %s), want (left %v, %s)",
				t0, p, ref.first, i, c.Links[i].Left, c.Links[i].Sibling, want[i].Left, want[i].Sibling)
		}
	}
	if !c.InputHash.Equal(ref.root(t0, t0+1)) || c.PublicationTime != p || c.AggregationTime != t0 {
		t.Fatalf("chain %d→%d: input %s, times %d/%d", t0, p, c.InputHash, c.PublicationTime, c.AggregationTime)
	}
	// The links equal the naive ones; that they also verify to the naive
	// root (ksi's chain verification) is checked on a sample.
	if (t0+p)%4 == 0 {
		if out, err := c.Output(&hasher); err != nil || !out.Equal(ref.root(0, p+1)) {
			t.Fatalf("chain %d→%d gives %s (%v), root %s", t0, p, out, err, ref.root(0, p+1))
		}
	}
	if got, err := c.AggregationTimeFromShape(); err != nil || got != t0 {
		t.Fatalf("chain %d→%d: shape gives time %d (%v)", t0, p, got, err)
	}
}
