package ksi

import (
	"bytes"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// TLV types inside aggregation and calendar hash chains (ksi-spec §3.1, §3.2).
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
	legacyIDMaxName   = 25
	maxLevel          = 0xFF
	maxChainIndexSize = 64
)

// Link is one step of an aggregation hash chain. A left link (type 0x07)
// means the chain's own node is the LEFT child, so the sibling is hashed
// after it; a right link (0x08) puts the sibling first (ksi-spec §4.1).
// Exactly one of SiblingHash, LegacyID and Metadata is set.
type Link struct {
	Left            bool
	LevelCorrection uint64
	SiblingHash     Imprint
	LegacyID        []byte
	Metadata        *Metadata
}

// Sibling returns the bytes the link contributes to its hash step (§4.2).
func (l *Link) Sibling() []byte {
	switch {
	case l.SiblingHash != nil:
		return l.SiblingHash
	case l.LegacyID != nil:
		return l.LegacyID
	default:
		return l.Metadata.Value
	}
}

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

func parseLink(e tlv.Element) (Link, error) {
	var l Link
	err := parseLinkInto(&l, e)
	return l, err
}

// parseLinkInto decodes a link into *l. Links are most of a signature's
// elements, so this loop is written out rather than going through fields.
func parseLinkInto(l *Link, e tlv.Element) error {
	const where = "aggregation chain link"
	*l = Link{Left: e.Type == tagLeftLink}
	var seenLC bool
	n := 0
	for rest := e.Value; len(rest) > 0; {
		c, r, err := tlv.Read(rest)
		if err != nil {
			return formatErr(where, "%v", err)
		}
		rest = r
		switch c.Type {
		case tagLevelCorr:
			if err := once(&seenLC, "level correction"); err != nil {
				return nestErr(where, c.Type, err)
			}
			if l.LevelCorrection, err = c.Uint(); err != nil {
				return nestErr(where, c.Type, err)
			}
			if l.LevelCorrection > maxLevel {
				return nestErr(where, c.Type, fmt.Errorf("level correction %d exceeds %d", l.LevelCorrection, maxLevel))
			}
		case tagSiblingHash:
			n++
			if l.SiblingHash, err = readImprint(c); err != nil {
				return nestErr(where, c.Type, err)
			}
		case tagLegacyID:
			n++
			if l.LegacyID, err = parseLegacyID(c.Value); err != nil {
				return nestErr(where, c.Type, err)
			}
		case tagMetadata:
			n++
			if l.Metadata, err = parseMetadata(c); err != nil {
				return nestErr(where, c.Type, err)
			}
		default:
			if !c.NonCritical {
				return formatErr(where, "unknown critical element %#x", c.Type)
			}
		}
	}
	if n != 1 {
		return formatErr(where, "need exactly one of sibling hash, legacy id, metadata; found %d", n)
	}
	return nil
}

// parseLegacyID checks the 29-byte legacy client id (ksi-spec §4.3).
func parseLegacyID(v []byte) ([]byte, error) {
	if len(v) != legacyIDLen {
		return nil, fmt.Errorf("legacy id must be %d bytes, got %d", legacyIDLen, len(v))
	}
	if v[0] != 0x03 || v[1] != 0x00 {
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
	const where = "aggregation chain"
	// A chain has four other elements at least (time, index, input hash,
	// algorithm) besides its links; indexes are few (one per level).
	n := max(tlv.Count(e.Value)-4, 1)
	c := &AggregationChain{Raw: e.Raw, Links: make([]Link, 0, n), ChainIndex: make([]uint64, 0, 4)}
	var seenTime, seenInput, seenAlg, seenData bool
	var err error
	err = fields(where, e.Value, &c.Unknown, func(x tlv.Element) (bool, error) {
		switch x.Type {
		case tagAggrTime:
			if err := once(&seenTime, "aggregation time"); err != nil {
				return true, err
			}
			c.AggregationTime, err = x.Uint()
			return true, err
		case tagChainIndex:
			if len(c.ChainIndex) >= maxChainIndexSize {
				return true, fmt.Errorf("more than %d chain index entries", maxChainIndexSize)
			}
			v, err := x.Uint()
			c.ChainIndex = append(c.ChainIndex, v)
			return true, err
		case tagInputData:
			if err := once(&seenData, "input data"); err != nil {
				return true, err
			}
			c.InputData = x.Value
			return true, nil
		case tagInputHash:
			if err := once(&seenInput, "input hash"); err != nil {
				return true, err
			}
			c.InputHash, err = readImprint(x)
			return true, err
		case tagAggrAlgorithm:
			if err := once(&seenAlg, "aggregation algorithm"); err != nil {
				return true, err
			}
			c.Algorithm, err = readAlg(x)
			return true, err
		case tagLeftLink, tagRightLink:
			if len(c.Links) >= MaxChainLinks {
				return true, fmt.Errorf("more than %d links", MaxChainLinks)
			}
			c.Links = append(c.Links, Link{})
			return true, parseLinkInto(&c.Links[len(c.Links)-1], x)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case !seenTime:
		return nil, formatErr(where, "aggregation time is required")
	case len(c.ChainIndex) == 0:
		return nil, formatErr(where, "chain index is required")
	case !seenInput:
		return nil, formatErr(where, "input hash is required")
	case !seenAlg:
		return nil, formatErr(where, "aggregation algorithm is required")
	case len(c.Links) == 0:
		return nil, formatErr(where, "at least one link is required")
	}
	return c, nil
}

// Shape returns the chain-index value the chain's links encode (ksi-spec
// §5.2): a sentinel 1 followed by one bit per link, highest link first,
// 1 for a left link.
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
// and the side (ksi-spec §3.2, §4.6).
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
	const where = "calendar chain"
	c := &CalendarChain{Raw: e.Raw, Links: make([]CalendarLink, 0, max(tlv.Count(e.Value), 0))}
	var seenPub, seenInput bool
	var err error
	err = fields(where, e.Value, &c.Unknown, func(x tlv.Element) (bool, error) {
		switch x.Type {
		case tagCalPubTime:
			if err := once(&seenPub, "publication time"); err != nil {
				return true, err
			}
			c.PublicationTime, err = x.Uint()
			return true, err
		case tagCalAggrTime:
			if err := once(&c.HasAggregationTime, "aggregation time"); err != nil {
				return true, err
			}
			c.AggregationTime, err = x.Uint()
			return true, err
		case tagInputHash:
			if err := once(&seenInput, "input hash"); err != nil {
				return true, err
			}
			c.InputHash, err = readImprint(x)
			return true, err
		case tagLeftLink, tagRightLink:
			if len(c.Links) >= MaxChainLinks {
				return true, fmt.Errorf("more than %d links", MaxChainLinks)
			}
			s, err := readImprint(x)
			c.Links = append(c.Links, CalendarLink{Left: x.Type == tagLeftLink, Sibling: s})
			return true, err
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	switch {
	case !seenPub:
		return nil, formatErr(where, "publication time is required")
	case !seenInput:
		return nil, formatErr(where, "input hash is required")
	case len(c.Links) == 0:
		return nil, formatErr(where, "at least one link is required")
	}
	if !c.HasAggregationTime {
		c.AggregationTime = c.PublicationTime
	}
	return c, nil
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
	case l.SiblingHash != nil:
		sibTag, sib = tagSiblingHash, l.SiblingHash
	case l.LegacyID != nil:
		sibTag, sib = tagLegacyID, l.LegacyID
	case l.Metadata != nil:
		sibTag, sib = tagMetadata, l.Metadata.Value
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
