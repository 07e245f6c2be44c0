package ksi

import (
	"fmt"
	"math/bits"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// ChainHead is what a signature's lowest aggregation chain holds before
// its links. A signer writes many signatures that share everything but
// the head's Shape and Input and the links, so the encoder takes the
// links already encoded (AppendLinkBytes, Tree.AppendPathBytes) and the
// signature's other elements as bytes: no per-signature model is built.
type ChainHead struct {
	AggregationTime uint64
	// ChainIndex is the chain index of the chain above this one (empty
	// when the calendar is next); Shape is appended to it as this
	// chain's own entry.
	ChainIndex []uint64
	Shape      uint64
	Input      Imprint
	Algorithm  HashAlg
}

// sharedLen returns the length of the elements that h shares with the
// other signatures of its round: the aggregation time and the chain index
// above this chain.
func (h *ChainHead) sharedLen() int {
	n := 2 + uintLen(h.AggregationTime)
	for _, x := range h.ChainIndex {
		n += 2 + uintLen(x)
	}
	return n
}

// chainValueLen returns the length of a lowest chain's value: sharedLen
// bytes of shared elements, then the shape, the input hash of inputLen
// bytes, the algorithm and linksLen bytes of links.
func chainValueLen(sharedLen int, shape uint64, inputLen int, alg HashAlg, linksLen int) int {
	return sharedLen + 2 + uintLen(shape) + tlv.HeaderSize(tagInputHash, inputLen) + inputLen +
		2 + uintLen(uint64(alg)) + linksLen
}

// SignatureLayout holds the encoded lengths of one signature, computed
// once by [ChainHead.Layout] for both sizing its buffer and writing it.
type SignatureLayout struct {
	chain, sig int // value lengths of the lowest chain and of the signature
}

// Len returns the length of the whole encoded signature.
func (l SignatureLayout) Len() int { return tlv.HeaderSize(TypeSignature, l.sig) + l.sig }

// Layout returns the lengths of a signature (0x800) whose first element
// is an aggregation chain with this head and linksLen bytes of links,
// followed by restLen bytes of further elements. It fails for a signature
// too long for TLV, or an input hash longer than any imprint.
func (h *ChainHead) Layout(linksLen, restLen int) (SignatureLayout, error) {
	return layout(h.sharedLen(), h.Shape, h.Input, h.Algorithm, linksLen, restLen)
}

// layout lays out a signature whose head shares sharedLen bytes of
// elements with its round's other signatures.
func layout(sharedLen int, shape uint64, input Imprint, alg HashAlg, linksLen, restLen int) (SignatureLayout, error) {
	if len(input) > 0xFF {
		return SignatureLayout{}, fmt.Errorf("ksi: document hash of %d bytes is too long", len(input))
	}
	chain := chainValueLen(sharedLen, shape, len(input), alg, linksLen)
	sig := tlv.HeaderSize(TypeAggregationChain, chain) + chain + restLen
	if sig > tlv.MaxValueLen {
		return SignatureLayout{}, fmt.Errorf("ksi: signature of %d bytes exceeds the TLV limit", sig)
	}
	return SignatureLayout{chain: chain, sig: sig}, nil
}

// AppendSignatureHead appends the start of a signature laid out by
// h.Layout: the signature's header, its lowest chain's header and the
// head's elements (aggregation time, chain index then Shape, input hash,
// algorithm). The caller then appends exactly the linksLen bytes of
// encoded links, lowest first, and the restLen bytes of the signature's
// other elements (upstream's chains, calendar chain, authentication or
// publication record) that Layout was given. It is on the signing hot
// path: one call per signature, no allocation when dst has room.
func (h *ChainHead) AppendSignatureHead(dst []byte, l SignatureLayout) []byte {
	// Layout checked the lengths.
	dst = appendHeaders(dst, l)
	dst = appendUintElem(dst, tagAggrTime, h.AggregationTime)
	for _, x := range h.ChainIndex {
		dst = appendUintElem(dst, tagChainIndex, x)
	}
	return appendOwn(dst, h.Shape, h.Input, h.Algorithm)
}

// SharedHead is what the heads of one round's signatures share (the
// aggregation time, the chain index above the lowest chain, the
// algorithm), encoded once. A signer writing a million signatures of one
// request lays out and writes each head from its own Shape and Input
// alone, in the bytes ChainHead writes.
type SharedHead struct {
	enc []byte // the time and chain index elements
	alg HashAlg
}

// Shared returns the part of h that its round's signatures share; h's
// Shape and Input are not in it.
func (h *ChainHead) Shared() SharedHead {
	enc := make([]byte, 0, h.sharedLen())
	enc = appendUintElem(enc, tagAggrTime, h.AggregationTime)
	for _, x := range h.ChainIndex {
		enc = appendUintElem(enc, tagChainIndex, x)
	}
	return SharedHead{enc: enc, alg: h.Algorithm}
}

// Layout is ChainHead.Layout for the head of s with shape and input.
func (s *SharedHead) Layout(shape uint64, input Imprint, linksLen, restLen int) (SignatureLayout, error) {
	return layout(len(s.enc), shape, input, s.alg, linksLen, restLen)
}

// AppendSignatureHead is ChainHead.AppendSignatureHead for the head of s
// with the shape and input that laid out l.
func (s *SharedHead) AppendSignatureHead(dst []byte, l SignatureLayout, shape uint64, input Imprint) []byte {
	dst = appendHeaders(dst, l)
	dst = append(dst, s.enc...)
	return appendOwn(dst, shape, input, s.alg)
}

// appendHeaders appends the headers of the signature and of its lowest
// chain.
func appendHeaders(dst []byte, l SignatureLayout) []byte {
	dst = tlv.AppendKnownHeader(dst, TypeSignature, l.sig)
	return tlv.AppendKnownHeader(dst, TypeAggregationChain, l.chain)
}

// appendOwn appends the lowest chain's elements after the shared ones:
// its own chain index entry, the input hash and the algorithm.
func appendOwn(dst []byte, shape uint64, input Imprint, alg HashAlg) []byte {
	dst = appendUintElem(dst, tagChainIndex, shape)
	dst = tlv.AppendKnownHeader(dst, tagInputHash, len(input))
	dst = append(dst, input...)
	return appendUintElem(dst, tagAggrAlgorithm, uint64(alg))
}

// appendUintElem appends a TLV8 unsigned integer element of a type below
// 0x20 (the value is at most 8 bytes, so the short header always fits),
// its value minimal as tlv.AppendUintValue writes it.
func appendUintElem(dst []byte, typ byte, x uint64) []byte {
	n := uintLen(x)
	dst = append(dst, typ, byte(n))
	for i := n - 1; i >= 0; i-- {
		dst = append(dst, byte(x>>(8*i)))
	}
	return dst
}

// uintLen is tlv.UintLen without a loop: it runs a few times for each
// signature written.
func uintLen(x uint64) int { return (bits.Len64(x) + 7) >> 3 }
