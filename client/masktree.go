package client

import (
	"crypto/sha256"
	"errors"
	"math/bits"

	"github.com/tempel-ksi/tempel/ksi"
)

// localTree is the hash tree of one SignMany request: a balanced tree,
// neighbours paired level by level and an odd node at the end moved up
// unpaired (as ksi.BuildTree), whose leaves are imprints of any algorithm
// and length (masked leaves, or document hashes without masks) and whose
// inner nodes are SHA-256, the aggregation algorithm.
//
// Nodes are numbered leaves first, then inner nodes in the order built.
// Each node's encoded link to its parent is prepared once, so a leaf's
// chain is the concatenation of the links on its path: the per-leaf work
// of assembling a million signatures is copying, not encoding.
type localTree struct {
	leaves  []ksi.Imprint
	inner   []byte  // inner node n+j's imprint at [j*innerSize:]
	parent  []int32 // -1 for the root
	level   []byte
	isLeft  []bool
	sibling []int32
	root    int32

	linkArena []byte
	linkOff   []int32  // node i's link is linkArena[linkOff[i]:linkOff[i+1]]
	pathLen   []int32  // bytes of the links from node i to the root
	shape     []uint64 // shape (docs/design/formats.md#chain-index) of node i's path to the root
}

const innerSize = 1 + sha256.Size

// errTreeLevel reports a tree too high for a level byte.
var errTreeLevel = errors.New("client: local tree higher than level 255")

// buildLocalTree builds the tree over leaves, all at level leafLevel.
// The leaves are kept by reference.
func buildLocalTree(leaves []ksi.Imprint, leafLevel byte) (*localTree, error) {
	n := len(leaves)
	total := 2*n - 1
	t := &localTree{
		leaves:  leaves,
		inner:   make([]byte, (n-1)*innerSize),
		parent:  make([]int32, total),
		level:   make([]byte, total),
		isLeft:  make([]bool, total),
		sibling: make([]int32, total),
	}
	for i := range n {
		t.level[i] = leafLevel
	}
	cur := make([]int32, n)
	for i := range cur {
		cur[i] = int32(i)
	}
	next := int32(n)
	var h ksi.Hasher
	for len(cur) > 1 {
		w := 0
		for i := 0; i+1 < len(cur); i += 2 {
			l, r := cur[i], cur[i+1]
			lvl := max(t.level[l], t.level[r])
			if lvl == 0xFF {
				return nil, errTreeLevel
			}
			lvl++
			p := next
			next++
			t.parent[l], t.parent[r] = p, p
			t.isLeft[l] = true
			t.sibling[l], t.sibling[r] = r, l
			t.level[p] = lvl
			out, err := h.AggregationStep(ksi.SHA2_256, t.node(l), t.node(r), true, lvl)
			if err != nil {
				return nil, err
			}
			copy(t.inner[int(p-int32(n))*innerSize:], out)
			cur[w] = p
			w++
		}
		if len(cur)%2 == 1 {
			cur[w] = cur[len(cur)-1]
			w++
		}
		cur = cur[:w]
	}
	t.root = cur[0]
	t.parent[t.root] = -1
	t.prepareLinks()
	return t, nil
}

// node returns node i's imprint.
func (t *localTree) node(i int32) []byte {
	if n := int32(len(t.leaves)); i < n {
		return t.leaves[i]
	} else {
		j := int(i-n) * innerSize
		return t.inner[j : j+innerSize]
	}
}

// Root returns the root imprint and its level.
func (t *localTree) Root() (ksi.Imprint, byte) { return ksi.Imprint(t.node(t.root)), t.level[t.root] }

// prepareLinks encodes every node's link to its parent and, top-down
// (a parent is numbered after its children), each node's path length and
// shape.
func (t *localTree) prepareLinks() {
	total := len(t.parent)
	t.linkOff = make([]int32, total+1)
	t.linkArena = make([]byte, 0, total*(6+innerSize))
	for i := range total {
		t.linkOff[i] = int32(len(t.linkArena))
		if p := t.parent[i]; p >= 0 {
			l := ksi.Link{Left: t.isLeft[i], LevelCorrection: uint64(t.level[p] - t.level[i] - 1), Sibling: t.node(t.sibling[i])}
			t.linkArena = ksi.AppendLinkBytes(t.linkArena, &l)
		}
	}
	t.linkOff[total] = int32(len(t.linkArena))
	t.pathLen = make([]int32, total)
	t.shape = make([]uint64, total)
	for i := total - 1; i >= 0; i-- {
		p := t.parent[i]
		if p < 0 {
			t.shape[i] = 1
			continue
		}
		t.pathLen[i] = t.pathLen[p] + t.linkOff[i+1] - t.linkOff[i]
		t.shape[i] = t.shape[p] << 1
		if t.isLeft[i] {
			t.shape[i] |= 1
		}
	}
}

// PathShape returns the shape of leaf i's path and its number of links.
func (t *localTree) PathShape(i int) (shape uint64, depth int) {
	shape = t.shape[i]
	return shape, bits.Len64(shape) - 1
}

// PathLen returns the length of leaf i's encoded links.
func (t *localTree) PathLen(i int) int { return int(t.pathLen[i]) }

// AppendPath appends leaf i's encoded links to the root, lowest first.
func (t *localTree) AppendPath(dst []byte, i int) []byte {
	for n := int32(i); t.parent[n] >= 0; n = t.parent[n] {
		dst = append(dst, t.linkArena[t.linkOff[n]:t.linkOff[n+1]]...)
	}
	return dst
}
