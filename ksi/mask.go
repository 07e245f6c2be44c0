package ksi

import (
	"crypto/sha256"
	"errors"
	"fmt"
)

// MaskSeedSize is the size of the random seed a bulk signer draws per
// batch: as long as the SHA-256 output, so a mask has all of its entropy.
const MaskSeedSize = 32

// MaskLinkLen is the length of an encoded mask link: a right link (0x08)
// holding the mask, a SHA-256 imprint, as its sibling hash (0x02).
const MaskLinkLen = 4 + 1 + 32

// ErrMask reports an unusable masking input.
var ErrMask = errors.New("ksi: bad blinding mask input")

// Masker blinds the leaves of a local aggregation tree as the reference
// block signers do (libksi KSI_BlockSigner with an initial value, goksi
// treebuilder.TreeOptMaskingWithPreviousLeaf), so that a leaf's signature
// shows its neighbours only as values derived from a secret seed. For the
// i-th document hash d_i, with x_{-1} the previous leaf:
//
//	m_i = SHA-256(x_{i-1} || seed)          the mask, an imprint
//	x_i = SHA-256(m_i || d_i || 0x01)       the masked leaf, at level 1
//
// Both are SHA-256 imprints (the algorithm byte is hashed with the
// digest); d_i may be an imprint of any algorithm. x_i is the aggregation
// step of the document at level 0 with the mask as its left sibling, so
// d_i's aggregation chain starts with a right link holding m_i. The first
// batch starts from the zero imprint, SHA-256 with 32 zero bytes; a batch
// that continues another starts from that batch's last leaf.
//
// A Masker is not safe for concurrent use; each leaf depends on the one
// before it.
type Masker struct {
	prev  [1 + 64]byte // x_{i-1}
	nPrev int
	seed  []byte
	h     Hasher
}

// ZeroLeaf returns the previous leaf of a first batch: the SHA-256
// imprint with an all-zero digest.
func ZeroLeaf() Imprint {
	z := make(Imprint, 1+sha256.Size)
	z[0] = byte(SHA2_256)
	return z
}

// NewMasker returns a Masker for seed (at most 64 bytes, at least one),
// starting after prev (nil for the zero leaf). prev may be an imprint of
// any supported algorithm (a previous batch of another signer).
func NewMasker(seed []byte, prev Imprint) (*Masker, error) {
	if len(seed) == 0 || len(seed) > 64 {
		return nil, fmt.Errorf("%w: seed of %d bytes, want 1 to 64", ErrMask, len(seed))
	}
	if prev == nil {
		prev = ZeroLeaf()
	}
	if _, err := ParseImprint(prev); err != nil {
		return nil, fmt.Errorf("%w: previous leaf: %v", ErrMask, err)
	}
	m := &Masker{seed: append([]byte(nil), seed...)}
	m.nPrev = copy(m.prev[:], prev)
	return m, nil
}

// Next masks document hash doc, which the caller has checked with
// [ParseImprint]: it writes the mask and the masked leaf, SHA-256
// imprints, to mask and leaf (33 bytes each) and makes the leaf the
// previous one.
func (m *Masker) Next(doc Imprint, mask, leaf []byte) {
	if len(doc) > 1+64 {
		panic("ksi: Masker.Next: document hash longer than any imprint")
	}
	// H(x_{i-1} || seed) is a step whose last input byte is the seed's.
	seed := m.seed
	out, err := m.h.step(SHA2_256, m.prev[:m.nPrev], seed[:len(seed)-1], seed[len(seed)-1])
	if err != nil {
		panic("ksi: Masker.Next: SHA-256: " + err.Error()) // cannot happen: SHA-256 is built in
	}
	copy(mask[:1+sha256.Size], out)
	if out, err = m.h.AggregationStep(SHA2_256, doc, mask[:1+sha256.Size], false, 1); err != nil {
		panic("ksi: Masker.Next: SHA-256: " + err.Error())
	}
	copy(leaf[:1+sha256.Size], out)
	m.nPrev = copy(m.prev[:], leaf[:1+sha256.Size])
}

// Last returns the last masked leaf (the previous leaf of the next batch),
// or the starting one before the first Next.
func (m *Masker) Last() Imprint { return append(Imprint(nil), m.prev[:m.nPrev]...) }

// AppendMaskLink appends the encoded first link of a masked document's
// chain: a right link, level correction 0, with the mask as its sibling.
func AppendMaskLink(dst []byte, mask []byte) []byte {
	dst = append(dst, tagRightLink, 2+1+sha256.Size, tagSiblingHash, 1+sha256.Size)
	return append(dst, mask[:1+sha256.Size]...)
}
