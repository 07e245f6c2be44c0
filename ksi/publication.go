package ksi

import (
	"time"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// TLV types of publication data and records (docs/design/formats.md#publications).
const (
	TypePublishedData     = 0x10
	TypePublicationRecord = 0x803
	// TypePubFileRecord is the type of a publication record inside a
	// publications file; same schema as TypePublicationRecord.
	TypePubFileRecord = 0x703

	tagPubTime   = 0x02
	tagPubHash   = 0x04
	tagPubRef    = 0x09
	tagRepoURI   = 0x0A
	tagPubDataIn = 0x10
)

// PublishedData is a calendar root with its time: (publication time,
// published hash). Raw keeps the exact element bytes, which are what a
// calendar authentication record signs.
type PublishedData struct {
	Time uint64
	Hash Imprint
	Raw  []byte
}

// NewPublishedData encodes published data as writers do (with the forward
// flag set, header byte 0x30).
func NewPublishedData(t uint64, h Imprint) PublishedData {
	b := tlv.NewBuilder(make([]byte, 0, 2+2+8+2+len(h)))
	b.Begin(TypePublishedData, false, true)
	b.Uint(tagPubTime, t)
	b.Bin(tagPubHash, h)
	b.End()
	raw, _ := b.Bytes() // bounded sizes: cannot fail for a valid imprint
	return PublishedData{Time: t, Hash: h, Raw: raw}
}

// ParsePublishedData decodes a published-data element (type 0x10).
func ParsePublishedData(e tlv.Element) (PublishedData, error) {
	const where = "published data"
	var p PublishedData
	var seenT, seenH bool
	var err error
	err = fields(where, e.Value, nil, func(c tlv.Element) (bool, error) {
		switch c.Type {
		case tagPubTime:
			if err := once(&seenT, "publication time"); err != nil {
				return true, err
			}
			p.Time, err = c.Uint()
			return true, err
		case tagPubHash:
			if err := once(&seenH, "published hash"); err != nil {
				return true, err
			}
			p.Hash, err = readImprint(c)
			return true, err
		}
		return false, nil
	})
	if err != nil {
		return PublishedData{}, err
	}
	if !seenT || !seenH {
		return PublishedData{}, formatErr(where, "publication time and published hash are required")
	}
	p.Raw = e.Raw
	return p, nil
}

// UTC returns the publication time as a time.Time.
func (p PublishedData) UTC() time.Time { return time.Unix(int64(p.Time), 0).UTC() }

// String returns the publication string of the data (docs/design/formats.md#publication-strings).
func (p PublishedData) String() string { return PublicationString(p.Time, p.Hash) }

// PublicationRecord is published data with references to where it was
// printed (docs/design/formats.md#publications), type 0x803 in signatures, 0x703 in
// publications files.
type PublicationRecord struct {
	Data          PublishedData
	References    []string
	RepositoryURI []string
	Unknown       []tlv.Element
	Raw           []byte
}

// ParsePublicationRecord decodes a publication record (0x803 or 0x703).
func ParsePublicationRecord(e tlv.Element) (*PublicationRecord, error) {
	const where = "publication record"
	r := &PublicationRecord{Raw: e.Raw}
	var seenData bool
	var err error
	err = fields(where, e.Value, &r.Unknown, func(c tlv.Element) (bool, error) {
		switch c.Type {
		case tagPubDataIn:
			if err := once(&seenData, "published data"); err != nil {
				return true, err
			}
			r.Data, err = ParsePublishedData(c)
			return true, err
		case tagPubRef:
			s, err := c.UTF8()
			r.References = append(r.References, s)
			return true, err
		case tagRepoURI:
			s, err := c.UTF8()
			r.RepositoryURI = append(r.RepositoryURI, s)
			return true, err
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if !seenData {
		return nil, formatErr(where, "published data is required")
	}
	return r, nil
}

// NewPublicationRecord builds a record of the given type (0x803 or 0x703).
func NewPublicationRecord(typ uint16, d PublishedData, refs, repos []string) (*PublicationRecord, error) {
	b := tlv.NewBuilder(nil)
	b.Begin(typ, false, false)
	b.Raw(d.Raw)
	for _, s := range refs {
		b.UTF8(tagPubRef, s)
	}
	for _, s := range repos {
		b.UTF8(tagRepoURI, s)
	}
	b.End()
	raw, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return &PublicationRecord{Data: d, References: refs, RepositoryURI: repos, Raw: raw}, nil
}

// WithType returns the record re-encoded under another type, keeping its
// children byte for byte (a 0x703 file record becomes a 0x803 signature
// record when a signature is extended).
func (r *PublicationRecord) WithType(typ uint16) (*PublicationRecord, error) {
	e, err := tlv.ReadOne(r.Raw)
	if err != nil {
		return nil, err
	}
	raw, err := tlv.Encode(typ, e.NonCritical, e.Forward, e.Value)
	if err != nil {
		return nil, err
	}
	c := *r
	c.Raw = raw
	return &c, nil
}
