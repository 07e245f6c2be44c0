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
	in, chain, ok := tlv.CutKnown(chain, tagInputHash)
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
// legacy id, and any other form, are refused.
func CutSiblingLink(links []byte, l *Link) (rest []byte, err error) {
	body, rest, ok := tlv.CutKnown(links, tagLeftLink)
	l.Left = ok
	if !ok {
		if body, rest, ok = tlv.CutKnown(links, tagRightLink); !ok {
			return nil, fmt.Errorf("%w: want a link", ErrNotWritten)
		}
	}
	l.LevelCorrection, l.Metadata = 0, nil
	if len(body) > 0 && body[0] == tagLevelCorr {
		if l.LevelCorrection, body, err = cutUintElem(body, tagLevelCorr); err != nil {
			return nil, err
		}
		if l.LevelCorrection == 0 {
			return nil, fmt.Errorf("%w: a zero level correction is left out", ErrNotWritten)
		}
	}
	sib, after, ok := tlv.CutKnown(body, tagSiblingHash)
	if !ok || len(after) != 0 || isLegacyID(sib) {
		return nil, fmt.Errorf("%w: a link is not one sibling hash", ErrNotWritten)
	}
	l.Sibling = sib
	return rest, nil
}

// cutUintElem reads the minimally encoded unsigned integer element of
// type typ at the start of b, as appendUintElem writes it.
func cutUintElem(b []byte, typ uint16) (uint64, []byte, error) {
	v, rest, ok := tlv.CutKnown(b, typ)
	if !ok || len(v) > 8 || (len(v) > 0 && v[0] == 0) {
		return 0, nil, fmt.Errorf("%w: want an integer of type %#x", ErrNotWritten, typ)
	}
	var x uint64
	for _, c := range v {
		x = x<<8 | uint64(c)
	}
	return x, rest, nil
}
