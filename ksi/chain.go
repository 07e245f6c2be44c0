package ksi

import (
	"bytes"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// TLV types inside aggregation and calendar hash chains (docs/design/formats.md#aggregation-hash-chains, #calendar-hash-chains).
const (
	TypeAggregationChain = 0x801
	TypeCalendarChain    = 0x802

	tagAggrTime       = 0x02
	tagChainIndex     = 0x03
	tagInputData      = 0x04
	tagInputHash      = 0x05
	tagAggrAlgorithm  = 0x06
	tagLeftLink       = 0x07
	tagRightLink      = 0x08
	tagLevelCorr      = 0x01
	tagSiblingHash    = 0x02
	tagLegacyID       = 0x03
	tagMetadata       = 0x04
	tagCalPubTime     = 0x01
	tagCalAggrTime    = 0x02
	legacyIDLen       = 29
	legacyIDTag       = 0x03 // first byte of a legacy id: a reserved algorithm id
	legacyIDMaxName   = 25
	maxLevel          = 0xFF
	maxChainIndexSize = 64
)

// Link is one step of an aggregation hash chain. A left link (type 0x07)
// means the chain's own node is the LEFT child, so the sibling is hashed
// after it; a right link (0x08) puts the sibling first (docs/design/formats.md#aggregation-hash-chains).
//
// A link carries exactly one of: a sibling imprint, a legacy client id
// (both in Sibling; a legacy id starts with 0x03, which no imprint does)
// or a metadata record (Metadata, with Sibling nil). One field for the
// first two keeps Link small: a parsed signature is mostly links.
type Link struct {
	Left            bool
	LevelCorrection uint64
	Sibling         []byte
	Metadata        *Metadata
}

// StepBytes returns the bytes the link contributes to its hash step
// (docs/design/formats.md#aggregation-hash-chains): the sibling imprint, the legacy id or the metadata.
func (l *Link) StepBytes() []byte {
	if l.Metadata != nil {
		return l.Metadata.Value
	}
	return l.Sibling
}

// SiblingHash returns the sibling imprint, or nil for a legacy-id or
// metadata link.
func (l *Link) SiblingHash() Imprint {
	if l.Metadata != nil || isLegacyID(l.Sibling) {
		return nil
	}
	return l.Sibling
}

// LegacyID returns the legacy client id, or nil for another kind of link.
func (l *Link) LegacyID() []byte {
	if l.Metadata != nil || !isLegacyID(l.Sibling) {
		return nil
	}
	return l.Sibling
}

func isLegacyID(b []byte) bool { return len(b) > 0 && b[0] == legacyIDTag }

// AggregationChain is one aggregation hash chain (type 0x801): the path
// from a chain's input through one aggregator's round tree.
type AggregationChain struct {
	AggregationTime uint64
	ChainIndex      []uint64
	InputData       []byte
	InputHash       Imprint
	Algorithm       HashAlg
	Links           []Link
	Unknown         []tlv.Element
	Raw             []byte
}

// parseLinkInto decodes a link into *l. Links are most of a signature's
// elements, so this loop is written out rather than going through fields.
func parseLinkInto(l *Link, e tlv.Element) error {
	const where = "aggregation chain link"
	*l = Link{Left: e.Type == tagLeftLink}
	var seenLC bool
	n := 0
	for rest := e.Value; len(rest) > 0; {
		at := rest
		typ, v, r, err := tlv.Next(rest)
		if err != nil {
			return formatErr(where, "%v", err)
		}
		rest = r
		switch typ {
		case tagLevelCorr:
			if err = once(&seenLC, "level correction"); err != nil {
				break
			}
			if l.LevelCorrection, err = tlv.DecodeUint(v); err == nil && l.LevelCorrection > maxLevel {
				err = fmt.Errorf("level correction %d exceeds %d", l.LevelCorrection, maxLevel)
			}
		case tagSiblingHash:
			n++
			l.Sibling, err = ParseImprint(v)
		case tagLegacyID:
			n++
			l.Sibling, err = parseLegacyID(v)
		case tagMetadata:
			n++
			l.Metadata, err = parseMetadata(elementAt(at))
		default:
			if err := keepUnknown(where, elementAt(at), nil); err != nil {
				return err
			}
		}
		if err != nil {
			return nestErr(where, typ, err)
		}
	}
	if n != 1 {
		return formatErr(where, "need exactly one of sibling hash, legacy id, metadata; found %d", n)
	}
	return nil
}

// parseLegacyID checks the 29-byte legacy client id (docs/design/formats.md#aggregation-hash-chains).
func parseLegacyID(v []byte) ([]byte, error) {
	if len(v) != legacyIDLen {
		return nil, fmt.Errorf("legacy id must be %d bytes, got %d", legacyIDLen, len(v))
	}
	if v[0] != legacyIDTag || v[1] != 0x00 {
		return nil, fmt.Errorf("legacy id must start with 03 00")
	}
	n := int(v[2])
	if n > legacyIDMaxName {
		return nil, fmt.Errorf("legacy id name length %d exceeds %d", n, legacyIDMaxName)
	}
	for _, c := range v[3+n:] {
		if c != 0 {
			return nil, fmt.Errorf("legacy id padding is not zero")
		}
	}
	return v, nil
}

// LegacyIDName returns the client name inside a legacy id.
func LegacyIDName(v []byte) string {
	if len(v) < 3 || int(v[2]) > len(v)-3 {
		return ""
	}
	return string(v[3 : 3+int(v[2])])
}

// ParseAggregationChain decodes an aggregation hash chain element.
func ParseAggregationChain(e tlv.Element) (*AggregationChain, error) {
	// A chain has four other elements at least (time, index, input hash,
	// algorithm) besides its links; indexes are few (one per level).
	c := new(AggregationChain)
	links := make([]Link, 0, max(tlv.Count(e.Value)-4, 1))
	if err := parseAggregationChainInto(c, e, links, make([]uint64, 0, 4)); err != nil {
		return nil, err
	}
	return c, nil
}

// parseAggregationChainInto decodes e into *c, appending the links and
// chain index entries to the given buffers (ParseSignature sizes one of
// each for all the chains of a signature). The loop is written out, not
// run through fields: chains are most of a signature.
func parseAggregationChainInto(c *AggregationChain, e tlv.Element, links []Link, index []uint64) error {
	const where = "aggregation chain"
	*c = AggregationChain{Raw: e.Raw, Links: links, ChainIndex: index}
	var seenTime, seenInput, seenAlg, seenData bool
	for rest := e.Value; len(rest) > 0; {
		at := rest
		typ, v, r, err := tlv.Next(rest)
		if err != nil {
			return formatErr(where, "at offset %d: %v", len(e.Value)-len(rest), err)
		}
		rest = r
		switch typ {
		case tagLeftLink, tagRightLink:
			if len(c.Links) >= MaxChainLinks {
				err = fmt.Errorf("more than %d links", MaxChainLinks)
				break
			}
			c.Links = append(c.Links, Link{})
			err = parseLinkInto(&c.Links[len(c.Links)-1], tlv.Element{Type: typ, Value: v, Raw: at[:len(at)-len(r)]})
		case tagAggrTime:
			if err = once(&seenTime, "aggregation time"); err == nil {
				c.AggregationTime, err = tlv.DecodeUint(v)
			}
		case tagChainIndex:
			if len(c.ChainIndex) >= maxChainIndexSize {
				err = fmt.Errorf("more than %d chain index entries", maxChainIndexSize)
				break
			}
			var x uint64
			x, err = tlv.DecodeUint(v)
			c.ChainIndex = append(c.ChainIndex, x)
		case tagInputData:
			if err = once(&seenData, "input data"); err == nil {
				c.InputData = v
			}
		case tagInputHash:
			if err = once(&seenInput, "input hash"); err == nil {
				c.InputHash, err = ParseImprint(v)
			}
		case tagAggrAlgorithm:
			if err = once(&seenAlg, "aggregation algorithm"); err == nil {
				c.Algorithm, err = readAlg(elementAt(at))
			}
		default:
			if err := keepUnknown(where, elementAt(at), &c.Unknown); err != nil {
				return err
			}
		}
		if err != nil {
			return nestErr(where, typ, err)
		}
	}
	// Cap the buffers so that appending to one chain's slices never
	// overwrites the next chain's.
	c.Links = c.Links[:len(c.Links):len(c.Links)]
	c.ChainIndex = c.ChainIndex[:len(c.ChainIndex):len(c.ChainIndex)]
	switch {
	case !seenTime:
		return formatErr(where, "aggregation time is required")
	case len(c.ChainIndex) == 0:
		return formatErr(where, "chain index is required")
	case !seenInput:
		return formatErr(where, "input hash is required")
	case !seenAlg:
		return formatErr(where, "aggregation algorithm is required")
	case len(c.Links) == 0:
		return formatErr(where, "at least one link is required")
	}
	return nil
}

// Shape returns the chain-index value the chain's links encode
// (docs/design/formats.md#chain-index): a sentinel 1 followed by one bit
// per link, highest link first, 1 for a left link.
func (c *AggregationChain) Shape() uint64 { return LinksShape(c.Links) }

// LinksShape computes the shape of a list of aggregation links.
func LinksShape(links []Link) uint64 {
	shape := uint64(1)
	for i := len(links) - 1; i >= 0; i-- {
		shape <<= 1
		if links[i].Left {
			shape |= 1
		}
	}
	return shape
}

// CalendarLink is one step of a calendar hash chain: the sibling imprint
// and the side (docs/design/formats.md#calendar-hash-chains).
type CalendarLink struct {
	Left    bool
	Sibling Imprint
}

// CalendarChain is the calendar hash chain (type 0x802): the path from a
// calendar leaf (the second's aggregation root) to a calendar root.
type CalendarChain struct {
	PublicationTime    uint64
	AggregationTime    uint64 // equals PublicationTime when the element is absent
	HasAggregationTime bool
	InputHash          Imprint
	Links              []CalendarLink
	Unknown            []tlv.Element
	Raw                []byte
}

// ParseCalendarChain decodes a calendar hash chain element.
func ParseCalendarChain(e tlv.Element) (*CalendarChain, error) {
	c := new(CalendarChain)
	if err := parseCalendarChainInto(c, e, make([]CalendarLink, 0, max(tlv.Count(e.Value), 0))); err != nil {
		return nil, err
	}
	return c, nil
}

// parseCalendarChainInto decodes e into *c, appending its links to links.
func parseCalendarChainInto(c *CalendarChain, e tlv.Element, links []CalendarLink) error {
	const where = "calendar chain"
	*c = CalendarChain{Raw: e.Raw, Links: links}
	var seenPub, seenInput bool
	for rest := e.Value; len(rest) > 0; {
		at := rest
		typ, v, r, err := tlv.Next(rest)
		if err != nil {
			return formatErr(where, "at offset %d: %v", len(e.Value)-len(rest), err)
		}
		rest = r
		switch typ {
		case tagLeftLink, tagRightLink:
			if len(c.Links) >= MaxChainLinks {
				err = fmt.Errorf("more than %d links", MaxChainLinks)
				break
			}
			var s Imprint
			s, err = ParseImprint(v)
			c.Links = append(c.Links, CalendarLink{Left: typ == tagLeftLink, Sibling: s})
		case tagCalPubTime:
			if err = once(&seenPub, "publication time"); err == nil {
				c.PublicationTime, err = tlv.DecodeUint(v)
			}
		case tagCalAggrTime:
			if err = once(&c.HasAggregationTime, "aggregation time"); err == nil {
				c.AggregationTime, err = tlv.DecodeUint(v)
			}
		case tagInputHash:
			if err = once(&seenInput, "input hash"); err == nil {
				c.InputHash, err = ParseImprint(v)
			}
		default:
			if err := keepUnknown(where, elementAt(at), &c.Unknown); err != nil {
				return err
			}
		}
		if err != nil {
			return nestErr(where, typ, err)
		}
	}
	switch {
	case !seenPub:
		return formatErr(where, "publication time is required")
	case !seenInput:
		return formatErr(where, "input hash is required")
	case len(c.Links) == 0:
		return formatErr(where, "at least one link is required")
	}
	if !c.HasAggregationTime {
		c.AggregationTime = c.PublicationTime
	}
	return nil
}

// NewCalendarChain encodes a calendar chain as writers do.
func NewCalendarChain(pubTime, aggrTime uint64, input Imprint, links []CalendarLink) (*CalendarChain, error) {
	b := tlv.NewBuilder(make([]byte, 0, 16+len(input)+len(links)*(2+len(input))))
	b.Begin(TypeCalendarChain, false, false)
	b.Uint(tagCalPubTime, pubTime)
	b.Uint(tagCalAggrTime, aggrTime)
	b.Bin(tagInputHash, input)
	for _, l := range links {
		t := uint16(tagRightLink)
		if l.Left {
			t = tagLeftLink
		}
		b.Bin(t, l.Sibling)
	}
	b.End()
	raw, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return &CalendarChain{PublicationTime: pubTime, AggregationTime: aggrTime, HasAggregationTime: true,
		InputHash: input, Links: links, Raw: raw}, nil
}

// RightLinksEqual reports whether two calendar chains have the same right
// links pairwise, the condition for two chains to belong to one calendar
// (CAL-04, and the compatibility check when extending).
func RightLinksEqual(a, b []CalendarLink) bool {
	i, j := 0, 0
	for {
		for i < len(a) && a[i].Left {
			i++
		}
		for j < len(b) && b[j].Left {
			j++
		}
		if i == len(a) || j == len(b) {
			return i == len(a) && j == len(b)
		}
		if !bytes.Equal(a[i].Sibling, b[j].Sibling) {
			return false
		}
		i++
		j++
	}
}

// NewAggregationChain encodes an aggregation chain as writers do: time,
// chain index, input hash, algorithm, then the links lowest first.
func NewAggregationChain(aggrTime uint64, chainIndex []uint64, input Imprint, alg HashAlg, links []Link) (*AggregationChain, error) {
	b := tlv.NewBuilder(make([]byte, 0, 64+len(links)*40))
	b.Begin(TypeAggregationChain, false, false)
	b.Uint(tagAggrTime, aggrTime)
	for _, x := range chainIndex {
		b.Uint(tagChainIndex, x)
	}
	b.Bin(tagInputHash, input)
	b.Uint(tagAggrAlgorithm, uint64(alg))
	for i := range links {
		AppendLink(b, &links[i])
	}
	b.End()
	raw, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return &AggregationChain{AggregationTime: aggrTime, ChainIndex: chainIndex, InputHash: input, Algorithm: alg, Links: links, Raw: raw}, nil
}

// AppendLink writes one aggregation link element.
func AppendLink(b *tlv.Builder, l *Link) {
	b.Raw(AppendLinkBytes(nil, l))
}

// AppendLinkBytes appends the encoding of one aggregation link element to
// dst. The lengths are known up front, so the bytes are written once, in
// order: this is on the signing hot path (one call per link per request).
func AppendLinkBytes(dst []byte, l *Link) []byte {
	t := byte(tagRightLink)
	if l.Left {
		t = tagLeftLink
	}
	var sibTag byte
	var sib []byte
	switch {
	case l.Metadata != nil:
		sibTag, sib = tagMetadata, l.Metadata.Value
	case isLegacyID(l.Sibling):
		sibTag, sib = tagLegacyID, l.Sibling
	default:
		sibTag, sib = tagSiblingHash, l.Sibling
	}
	lcLen := tlv.UintLen(l.LevelCorrection)
	n := tlv.HeaderSize(uint16(sibTag), len(sib)) + len(sib)
	if lcLen > 0 {
		n += 2 + lcLen
	}
	var err error
	if dst, err = tlv.AppendHeader(dst, uint16(t), false, false, n); err != nil {
		return dst // cannot happen: a link's value is far below 65535 bytes
	}
	if lcLen > 0 {
		dst = append(dst, tagLevelCorr, byte(lcLen))
		dst = tlv.AppendUintValue(dst, l.LevelCorrection)
	}
	dst, _ = tlv.AppendHeader(dst, uint16(sibTag), false, false, len(sib))
	return append(dst, sib...)
}
