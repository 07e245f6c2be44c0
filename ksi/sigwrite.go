package ksi

import (
	"fmt"

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

// chainValueLen returns the length of the chain's value with linksLen
// bytes of links.
func (h *ChainHead) chainValueLen(linksLen int) int {
	n := 2 + tlv.UintLen(h.AggregationTime)
	for _, x := range h.ChainIndex {
		n += 2 + tlv.UintLen(x)
	}
	n += 2 + tlv.UintLen(h.Shape)
	n += tlv.HeaderSize(tagInputHash, len(h.Input)) + len(h.Input)
	return n + 2 + tlv.UintLen(uint64(h.Algorithm)) + linksLen
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
	if len(h.Input) > 0xFF {
		return SignatureLayout{}, fmt.Errorf("ksi: document hash of %d bytes is too long", len(h.Input))
	}
	chain := h.chainValueLen(linksLen)
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
	dst = tlv.AppendKnownHeader(dst, TypeSignature, l.sig)
	dst = tlv.AppendKnownHeader(dst, TypeAggregationChain, l.chain)
	dst = appendUintElem(dst, tagAggrTime, h.AggregationTime)
	for _, x := range h.ChainIndex {
		dst = appendUintElem(dst, tagChainIndex, x)
	}
	dst = appendUintElem(dst, tagChainIndex, h.Shape)
	dst = tlv.AppendKnownHeader(dst, tagInputHash, len(h.Input))
	dst = append(dst, h.Input...)
	return appendUintElem(dst, tagAggrAlgorithm, uint64(h.Algorithm))
}

// appendUintElem appends a TLV8 unsigned integer element of a type below
// 0x20 (the value is at most 8 bytes, so the short header always fits).
func appendUintElem(dst []byte, typ byte, x uint64) []byte {
	dst = append(dst, typ, byte(tlv.UintLen(x)))
	return tlv.AppendUintValue(dst, x)
}
