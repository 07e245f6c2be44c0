package ksi

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// TreeLeaf is an input of an aggregation tree: a hash at a tree level.
type TreeLeaf struct {
	Hash  Imprint
	Level byte
}

// Tree is an aggregation round tree (ksi-spec §4.1): built once per round
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
}

// ErrTreeInput reports an unusable tree input.
var ErrTreeInput = errors.New("ksi: bad aggregation tree input")

// BuildTree builds a balanced tree over the leaves, pairing neighbours
// level by level; an odd node at the end moves up unpaired. Every leaf
// must use algorithm alg.
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
			return nil, fmt.Errorf("%w: leaf %d is not a %s imprint", ErrTreeInput, i, alg)
		}
		copy(t.hashes[i*size:], l.Hash)
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

func (t *Tree) node(i int32) []byte { return t.hashes[int(i)*t.size : int(i+1)*t.size] }

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
			SiblingHash:     Imprint(t.node(sib)),
		})
		n = p
	}
	return dst
}
