package ksi

import (
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// ErrNotWritten reports bytes that are not in the form this package's
// signature writers give: ReadSignatureHead and CutSiblingLink check a
// signer's own output, so they accept that one form only.
var ErrNotWritten = errors.New("ksi: not a signature as written")

// ReadSignatureHead reads in place what AppendSignatureHead wrote at the
// start of sig, which must be one whole signature: it sets h's fields
// (ChainIndex reuses h's slice, Input aliases sig) and returns the lowest
// chain's links, still encoded, and the signature's other elements.
//
// It accepts only the writer's form (headers as tlv.AppendKnownHeader
// writes them, minimal integers, the elements in the writer's order with
// no others) and checks neither the links nor the other elements: it is
// for a signer checking its own signatures cheaply, a million at a time.
// Signatures from elsewhere are read with ParseSignature.
func ReadSignatureHead(sig []byte, h *ChainHead) (links, rest []byte, err error) {
	body, after, ok := tlv.CutKnown(sig, TypeSignature)
	if !ok || len(after) != 0 {
		return nil, nil, fmt.Errorf("%w: not one signature element", ErrNotWritten)
	}
	chain, rest, ok := tlv.CutKnown(body, TypeAggregationChain)
	if !ok {
		return nil, nil, fmt.Errorf("%w: no aggregation chain first", ErrNotWritten)
	}
	if h.AggregationTime, chain, err = cutUintElem(chain, tagAggrTime); err != nil {
		return nil, nil, err
	}
	h.ChainIndex = h.ChainIndex[:0]
	var x uint64
	for {
		if x, chain, err = cutUintElem(chain, tagChainIndex); err != nil {
			return nil, nil, err
		}
		if len(chain) == 0 || chain[0] != tagChainIndex {
			break
		}
		h.ChainIndex = append(h.ChainIndex, x)
	}
	h.Shape = x
	in, chain, ok := cut8(chain, tagInputHash)
	if !ok {
		return nil, nil, fmt.Errorf("%w: want input hash (%#x)", ErrNotWritten, tagInputHash)
	}
	h.Input = in
	alg, links, err := cutUintElem(chain, tagAggrAlgorithm)
	if err != nil {
		return nil, nil, err
	}
	if alg > 0xFF {
		return nil, nil, fmt.Errorf("%w: algorithm %d", ErrNotWritten, alg)
	}
	h.Algorithm = HashAlg(alg)
	return links, rest, nil
}

// CutSiblingLink reads in place the link at the start of links as
// AppendLinkBytes (or AppendMaskLink) writes one with a sibling hash: it
// sets l's side, level correction and sibling (aliasing links; no
// metadata) and returns the links after it. Links with metadata or a
// legacy id, and any other form, are refused. It runs for every link of
// every signature checked, so its helpers are inlined.
func CutSiblingLink(links []byte, l *Link) (rest []byte, err error) {
	if len(links) == 0 || (links[0] != tagLeftLink && links[0] != tagRightLink) {
		return nil, fmt.Errorf("%w: want a link", ErrNotWritten)
	}
	body, rest, ok := cut8(links, links[0])
	if !ok {
		return nil, fmt.Errorf("%w: want a link", ErrNotWritten)
	}
	l.Left = links[0] == tagLeftLink
	l.LevelCorrection, l.Metadata = 0, nil
	if len(body) > 0 && body[0] == tagLevelCorr {
		v, after, ok := cut8(body, tagLevelCorr)
		x, minimal := minimalUint(v)
		if !ok || !minimal || x == 0 {
			return nil, fmt.Errorf("%w: want a nonzero level correction, minimal", ErrNotWritten)
		}
		l.LevelCorrection, body = x, after
	}
	sib, after, ok := cut8(body, tagSiblingHash)
	if !ok || len(after) != 0 || isLegacyID(sib) {
		return nil, fmt.Errorf("%w: a link is not one sibling hash", ErrNotWritten)
	}
	l.Sibling = sib
	return rest, nil
}

// cut8 reads the element of type typ at the start of b in the TLV8 form
// without flags, the form of every element inside a lowest chain as
// written (tlv.CutKnown for a type and length that fit TLV8).
func cut8(b []byte, typ byte) (value, rest []byte, ok bool) {
	if len(b) < 2 || b[0] != typ || int(b[1])+2 > len(b) {
		return nil, nil, false
	}
	n := int(b[1]) + 2
	return b[2:n:n], b[n:], true
}

// minimalUint decodes an unsigned integer value, reporting whether it is
// encoded as appendUintElem writes it: at most 8 bytes, no leading zero.
func minimalUint(v []byte) (x uint64, minimal bool) {
	if len(v) > 8 || (len(v) > 0 && v[0] == 0) {
		return 0, false
	}
	for _, c := range v {
		x = x<<8 | uint64(c)
	}
	return x, true
}

// cutUintElem reads the minimally encoded unsigned integer element of
// type typ at the start of b, as appendUintElem writes it.
func cutUintElem(b []byte, typ byte) (uint64, []byte, error) {
	v, rest, ok := cut8(b, typ)
	x, minimal := minimalUint(v)
	if !ok || !minimal {
		return 0, nil, fmt.Errorf("%w: want an integer of type %#x", ErrNotWritten, typ)
	}
	return x, rest, nil
}
