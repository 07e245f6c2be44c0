package ksi

import (
	"errors"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// ErrLevelShift reports a level correction that cannot be shifted as asked:
// it would fall below 0 or above 255, or the element has no link to shift.
var ErrLevelShift = errors.New("ksi: cannot shift the input level")

// ShiftInputLevel returns the signature sig (an encoded 0x800) with the
// level correction of its lowest aggregation chain's first link changed
// by delta, every other element kept byte for byte.
//
// Why: a signature's first correction counts the input's level, but a KSI
// PDU aggregation response is relative to the request: the reference
// clients add the request level to that correction themselves
// (docs/design/formats.md#level-corrections). The server lowers it by the
// request level L before answering; a client raises it back. The shifted
// chain, run from level L instead of 0, gives the same hashes: only where
// the levels are counted from moves. Run from 0 it does not (INT-01).
//
// The lowest chain is the one with the most chain index entries
// (docs/design/formats.md#chain-index); a tie is refused. A delta of 0 returns sig itself.
func ShiftInputLevel(sig []byte, delta int) ([]byte, error) {
	if delta == 0 {
		return sig, nil
	}
	outer, err := tlv.ReadOne(sig)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLevelShift, err)
	}
	if outer.Type != TypeSignature {
		return nil, fmt.Errorf("%w: element %#x is not a signature", ErrLevelShift, outer.Type)
	}
	children, err := outer.Children()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLevelShift, err)
	}
	lowest, most, tied := -1, 0, false
	for i, c := range children {
		if c.Type != TypeAggregationChain {
			continue
		}
		switch n := countType(c.Value, tagChainIndex); {
		case n > most:
			lowest, most, tied = i, n, false
		case n == most:
			tied = true
		}
	}
	switch {
	case lowest < 0:
		return nil, fmt.Errorf("%w: the signature has no aggregation chain with a chain index", ErrLevelShift)
	case tied:
		return nil, fmt.Errorf("%w: two aggregation chains could be the lowest (%d chain index entries each)", ErrLevelShift, most)
	}
	chain, err := ShiftFirstLevelCorrection(children[lowest].Raw, delta)
	if err != nil {
		return nil, err
	}
	b := tlv.NewBuilder(make([]byte, 0, len(sig)+4))
	b.Begin(TypeSignature, outer.NonCritical, outer.Forward)
	for i, c := range children {
		if i == lowest {
			b.Raw(chain)
		} else {
			b.Raw(c.Raw)
		}
	}
	b.End()
	return b.Bytes()
}

// ShiftFirstLevelCorrection returns the aggregation chain element chain
// (an encoded 0x801) with the level correction of its first link changed
// by delta; see ShiftInputLevel. The correction element (0x01) is written
// in minimal form, and left out when the result is 0, as writers do;
// every other element is kept byte for byte, and the lengths of the link
// and the chain are encoded anew. The result must lie in 0..255.
func ShiftFirstLevelCorrection(chain []byte, delta int) ([]byte, error) {
	e, err := tlv.ReadOne(chain)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLevelShift, err)
	}
	if e.Type != TypeAggregationChain {
		return nil, fmt.Errorf("%w: element %#x is not an aggregation chain", ErrLevelShift, e.Type)
	}
	children, err := e.Children()
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrLevelShift, err)
	}
	b := tlv.NewBuilder(make([]byte, 0, len(chain)+4))
	b.Begin(TypeAggregationChain, e.NonCritical, e.Forward)
	shifted := false
	for _, c := range children {
		if !shifted && (c.Type == tagLeftLink || c.Type == tagRightLink) {
			if err := shiftLink(b, c, delta); err != nil {
				return nil, err
			}
			shifted = true
			continue
		}
		b.Raw(c.Raw)
	}
	if !shifted {
		return nil, fmt.Errorf("%w: the aggregation chain has no link", ErrLevelShift)
	}
	b.End()
	return b.Bytes()
}

// shiftLink writes link with its level correction changed by delta.
func shiftLink(b *tlv.Builder, link tlv.Element, delta int) error {
	children, err := link.Children()
	if err != nil {
		return fmt.Errorf("%w: first link: %w", ErrLevelShift, err)
	}
	var old uint64
	seen := false
	for _, c := range children {
		if c.Type != tagLevelCorr {
			continue
		}
		if seen {
			return fmt.Errorf("%w: first link has two level corrections", ErrLevelShift)
		}
		seen = true
		if old, err = c.Uint(); err != nil {
			return fmt.Errorf("%w: first link's level correction: %w", ErrLevelShift, err)
		}
	}
	if old > maxLevel {
		return fmt.Errorf("%w: level correction %d exceeds %d", ErrLevelShift, old, maxLevel)
	}
	n := int(old) + delta
	if n < 0 || n > maxLevel {
		return fmt.Errorf("%w: level correction %d %+d is outside 0..%d", ErrLevelShift, old, delta, maxLevel)
	}
	corr := uint64(n)
	b.Begin(link.Type, link.NonCritical, link.Forward)
	if !seen && corr > 0 {
		b.Uint(tagLevelCorr, corr)
	}
	for _, c := range children {
		if c.Type != tagLevelCorr {
			b.Raw(c.Raw)
			continue
		}
		if corr > 0 { // in its place, with its flags
			b.Element(tagLevelCorr, c.NonCritical, c.Forward, tlv.AppendUintValue(nil, corr))
		}
	}
	b.End()
	return nil
}

// countType counts the elements of type typ in a composite's value;
// malformed input stops the count.
func countType(value []byte, typ uint16) int {
	n := 0
	for rest := value; len(rest) > 0; {
		t, _, r, err := tlv.Next(rest)
		if err != nil {
			return n
		}
		if t == typ {
			n++
		}
		rest = r
	}
	return n
}
