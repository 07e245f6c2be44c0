package ksi

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"math/bits"
)

// TreeLeaf is an input of an aggregation tree: a hash at a tree level.
type TreeLeaf struct {
	Hash  Imprint
	Level byte
}

// Tree is an aggregation round tree (docs/design/formats.md#aggregation-hash-chains): built once per round
// from its leaves; each leaf's path to the root becomes that leaf's
// aggregation chain links.
//
// Nodes are numbered leaves first, then parents in the order built; a
// node's hash lives in one arena of fixed-size imprints.
type Tree struct {
	alg      HashAlg
	size     int     // imprint length
	hashes   []byte  // node i's imprint at [i*size : (i+1)*size]
	parent   []int32 // -1 for the root
	level    []byte  // node level
	isLeft   []bool  // node is its parent's left child
	sibling  []int32 // the other child of the node's parent
	nLeaves  int
	rootNode int32
	// leafHash holds the leaves when some leaf is not an imprint of alg
	// (a document hash of another algorithm): leaves then differ in
	// length and stay out of the fixed-size arena. nil otherwise.
	leafHash []Imprint

	linkArena []byte   // PrepareLinks: every node's encoded link to its parent
	linkOff   []int32  // node i's link is linkArena[linkOff[i]:linkOff[i+1]]
	pathLen   []int32  // PrepareLinks: bytes of the links from node i to the root
	shape     []uint64 // PrepareLinks: the shape of every node's path to the root
}

// ErrTreeInput reports an unusable tree input.
var ErrTreeInput = errors.New("ksi: bad aggregation tree input")

// BuildTree builds a balanced tree over the leaves, pairing neighbours
// level by level; an odd node at the end moves up unpaired. Nodes above
// the leaves are hashed with alg. A leaf is any well-formed imprint: each
// step hashes whole imprints (docs/design/formats.md#aggregation-hash-chains), so a document hash of
// another algorithm is a leaf like any other. A one-leaf tree's root is
// that leaf.
func BuildTree(alg HashAlg, leaves []TreeLeaf) (*Tree, error) {
	if len(leaves) == 0 {
		return nil, fmt.Errorf("%w: no leaves", ErrTreeInput)
	}
	if !alg.Supported() {
		return nil, fmt.Errorf("%w: %s", ErrUnsupportedAlg, alg)
	}
	size := 1 + alg.Size()
	n := 2*len(leaves) - 1
	t := &Tree{
		alg: alg, size: size, nLeaves: len(leaves),
		hashes:  make([]byte, n*size),
		parent:  make([]int32, n),
		level:   make([]byte, n),
		isLeft:  make([]bool, n),
		sibling: make([]int32, n),
	}
	for i, l := range leaves {
		if len(l.Hash) != size || l.Hash.Alg() != alg {
			if err := t.addOtherLeaf(leaves, i); err != nil {
				return nil, err
			}
		} else {
			copy(t.hashes[i*size:], l.Hash)
			if t.leafHash != nil {
				t.leafHash[i] = t.hashes[i*size : (i+1)*size : (i+1)*size]
			}
		}
		t.level[i] = l.Level
	}
	// cur holds the node ids of the level being paired; reuse one buffer.
	cur := make([]int32, len(leaves))
	for i := range cur {
		cur[i] = int32(i)
	}
	next := int32(len(leaves))
	var h Hasher
	var buf [2*(1+64) + 1]byte
	for len(cur) > 1 {
		w := 0
		for i := 0; i+1 < len(cur); i += 2 {
			l, r := cur[i], cur[i+1]
			lvl := max(t.level[l], t.level[r])
			if lvl == maxLevel {
				return nil, ErrLevelOverflow
			}
			lvl++
			p := next
			next++
			t.parent[l], t.parent[r] = p, p
			t.isLeft[l] = true
			t.sibling[l], t.sibling[r] = r, l
			t.level[p] = lvl
			data := append(append(append(buf[:0], t.node(l)...), t.node(r)...), lvl)
			dst := t.hashes[int(p)*size : int(p+1)*size]
			if alg == SHA2_256 {
				s := sha256.Sum256(data)
				dst[0] = byte(SHA2_256)
				copy(dst[1:], s[:])
			} else {
				out, err := h.Hash(alg, data)
				if err != nil {
					return nil, err
				}
				copy(dst, out)
			}
			cur[w] = p
			w++
		}
		if len(cur)%2 == 1 {
			cur[w] = cur[len(cur)-1]
			w++
		}
		cur = cur[:w]
	}
	t.rootNode = cur[0]
	t.parent[t.rootNode] = -1
	return t, nil
}

// addOtherLeaf records leaf i, an imprint not of the tree's algorithm,
// switching the tree to leafHash on the first such leaf.
func (t *Tree) addOtherLeaf(leaves []TreeLeaf, i int) error {
	h, err := ParseImprint(leaves[i].Hash)
	if err != nil {
		return fmt.Errorf("%w: leaf %d: %w", ErrTreeInput, i, err)
	}
	if t.leafHash == nil {
		t.leafHash = make([]Imprint, len(leaves))
		for j := 0; j < i; j++ {
			t.leafHash[j] = t.hashes[j*t.size : (j+1)*t.size : (j+1)*t.size]
		}
	}
	t.leafHash[i] = append(Imprint(nil), h...)
	return nil
}

func (t *Tree) node(i int32) []byte {
	if t.leafHash != nil && int(i) < t.nLeaves {
		return t.leafHash[i]
	}
	return t.hashes[int(i)*t.size : int(i+1)*t.size]
}

// Len returns the number of leaves.
func (t *Tree) Len() int { return t.nLeaves }

// Root returns the root hash and its level. The imprint aliases the tree.
func (t *Tree) Root() (Imprint, byte) { return Imprint(t.node(t.rootNode)), t.level[t.rootNode] }

// Path returns the links from leaf i to the root, lowest first. Sibling
// hashes alias the tree.
func (t *Tree) Path(i int) []Link { return t.AppendPath(nil, i) }

// AppendPath appends leaf i's links to dst.
func (t *Tree) AppendPath(dst []Link, i int) []Link {
	n := int32(i)
	for t.parent[n] >= 0 {
		p := t.parent[n]
		sib := t.sibling[n]
		dst = append(dst, Link{
			Left:            t.isLeft[n],
			LevelCorrection: uint64(t.level[p] - t.level[n] - 1),
			Sibling:         t.node(sib),
		})
		n = p
	}
	return dst
}

// PrepareLinks encodes, once per tree, the link from every node to its
// parent (side, level correction, sibling hash). A leaf's chain is then
// the concatenation of the encodings along its path: per-round work done
// once, not once per request (docs/design/latency.md#work-per-request). Call it once, before
// AppendPathBytes, from one goroutine.
func (t *Tree) PrepareLinks() {
	n := len(t.parent)
	t.linkOff = make([]int32, n+1)
	t.linkArena = make([]byte, 0, n*(8+t.size))
	for i := 0; i < n; i++ {
		t.linkOff[i] = int32(len(t.linkArena))
		if p := t.parent[i]; p >= 0 {
			l := Link{Left: t.isLeft[i], LevelCorrection: uint64(t.level[p] - t.level[i] - 1), Sibling: t.node(t.sibling[i])}
			t.linkArena = AppendLinkBytes(t.linkArena, &l)
		}
	}
	t.linkOff[n] = int32(len(t.linkArena))
	// Shapes top-down: a parent is built after its children, so walking
	// ids downwards visits every parent first. The root's path is empty
	// (shape 1, the sentinel); a child's shape appends its side bit.
	t.shape = make([]uint64, n)
	t.pathLen = make([]int32, n)
	for i := n - 1; i >= 0; i-- {
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

// PathShape returns the shape of leaf i's path (docs/design/formats.md#chain-index) and its
// length, precomputed by PrepareLinks.
func (t *Tree) PathShape(i int) (shape uint64, depth int) {
	shape = t.shape[i]
	return shape, bits.Len64(shape) - 1
}

// PathLen returns the length of leaf i's encoded links (what
// AppendPathBytes appends), precomputed by PrepareLinks.
func (t *Tree) PathLen(i int) int { return int(t.pathLen[i]) }

// AppendPathBytes appends the encoded links from leaf i to the root,
// lowest first. PrepareLinks must have run.
func (t *Tree) AppendPathBytes(dst []byte, i int) []byte {
	for n := int32(i); t.parent[n] >= 0; n = t.parent[n] {
		dst = append(dst, t.linkArena[t.linkOff[n]:t.linkOff[n+1]]...)
	}
	return dst
}
