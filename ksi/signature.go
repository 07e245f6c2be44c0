package ksi

import (
	"fmt"
	"slices"
	"time"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// TLV types of a KSI signature (docs/design/formats.md#signature-structure).
const (
	TypeSignature          = 0x800
	TypeAggregationAuth    = 0x804
	TypeCalendarAuthRecord = 0x805
	TypeRFC3161Record      = 0x806

	tagSignatureData = 0x0B
	tagSigType       = 0x01
	tagSigValue      = 0x02
	tagCertID        = 0x03
	tagCertRepoURI   = 0x04

	tagTSTInfoPrefix  = 0x10
	tagTSTInfoSuffix  = 0x11
	tagTSTInfoAlg     = 0x12
	tagSigAttrPrefix  = 0x13
	tagSigAttrSuffix  = 0x14
	tagSigAttrAlg     = 0x15
	tagRFCChainIndex  = 0x03
	tagRFCAggrTime    = 0x02
	tagRFCInputData   = 0x04
	tagRFCInputHashes = 0x05
)

// Signature is a KSI signature (type 0x800). It is immutable once parsed
// or built: Raw holds its exact encoding, and every part keeps its own
// raw bytes so that what was hashed or signed is never re-encoded.
type Signature struct {
	// AggregationChains in file order. Use Chains for the verification
	// order (lowest chain first).
	AggregationChains  []*AggregationChain
	CalendarChain      *CalendarChain
	PublicationRecord  *PublicationRecord
	CalendarAuthRecord *CalendarAuthRecord
	AggregationAuth    []byte // raw 0x804 element, unused by any rule
	RFC3161            *RFC3161Record
	Unknown            []tlv.Element
	Raw                []byte

	sorted []*AggregationChain
	// Flags of the outer element, kept so Encode gives back the input.
	nonCritical, forward bool
}

// Encode writes the signature from its parts: the 0x800 header followed by
// each part's bytes in the order they were read. A parsed signature
// re-encodes to exactly the bytes it was parsed from.
func (s *Signature) Encode() ([]byte, error) {
	outer, err := tlv.ReadOne(s.Raw)
	if err != nil {
		return nil, err
	}
	b := tlv.NewBuilder(make([]byte, 0, len(s.Raw)))
	b.Begin(TypeSignature, s.nonCritical, s.forward)
	for it := tlv.NewIter(outer.Value); ; {
		c, ok, err := it.Next()
		if err != nil {
			return nil, err
		}
		if !ok {
			break
		}
		b.Raw(c.Raw)
	}
	b.End()
	return b.Bytes()
}

// SignatureData is the PKI signature of a calendar authentication record.
type SignatureData struct {
	Type          string // signature algorithm OID in dotted form
	Value         []byte
	CertificateID []byte
	CertRepoURI   string
}

// CalendarAuthRecord is a PKI signature on a calendar root (type 0x805).
type CalendarAuthRecord struct {
	PublishedData PublishedData
	SignatureData SignatureData
	Raw           []byte
}

// RFC3161Record lets a legacy RFC 3161 time-stamp carry on as a KSI
// signature (type 0x806, docs/design/formats.md#rfc-3161-records).
type RFC3161Record struct {
	AggregationTime uint64
	ChainIndex      []uint64
	InputData       []byte
	InputHash       Imprint
	TSTInfoPrefix   []byte
	TSTInfoSuffix   []byte
	TSTInfoAlg      HashAlg
	SigAttrPrefix   []byte
	SigAttrSuffix   []byte
	SigAttrAlg      HashAlg
	Raw             []byte
}

// ParseSignature decodes a KSI signature from its encoding (a .ksig file).
// The result aliases b.
func ParseSignature(b []byte) (*Signature, error) {
	if len(b) > MaxObjectSize {
		return nil, formatErr("signature", "%d bytes exceeds the %d-byte limit", len(b), MaxObjectSize)
	}
	e, err := tlv.ReadOne(b)
	if err != nil {
		return nil, formatErr("signature", "%v", err)
	}
	if e.Type != TypeSignature {
		return nil, formatErr("signature", "outer element is %#x, want %#x", e.Type, TypeSignature)
	}
	s, err := signatureFromElements(e)
	if err != nil {
		return nil, err
	}
	s.nonCritical, s.forward = e.NonCritical, e.Forward
	return s, nil
}

// SignatureFromElements builds a signature from its child elements (as an
// aggregation response carries them, docs/design/formats.md#aggregation) and encodes it.
func SignatureFromElements(elements [][]byte) (*Signature, error) {
	n := 0
	for _, r := range elements {
		n += len(r)
	}
	b := tlv.NewBuilder(make([]byte, 0, 4+n))
	b.Begin(TypeSignature, false, false)
	for _, r := range elements {
		b.Raw(r)
	}
	b.End()
	raw, err := b.Bytes()
	if err != nil {
		return nil, formatErr("signature", "%v", err)
	}
	return ParseSignature(raw)
}

// signatureParts counts, in one walk over the element headers, what a
// signature holds, so that parsing allocates each kind of part once.
// Malformed input may be miscounted; the parse that follows reports it.
type signatureParts struct {
	chains, links, indexes, calendarLinks int
}

func countSignatureParts(v []byte) signatureParts {
	var n signatureParts
	for len(v) > 0 {
		typ, value, rest, err := tlv.Next(v)
		if err != nil {
			break
		}
		v = rest
		switch typ {
		case TypeAggregationChain:
			n.chains++
			for w := value; len(w) > 0; {
				x, _, r, err := tlv.Next(w)
				if err != nil {
					break
				}
				w = r
				switch x {
				case tagLeftLink, tagRightLink:
					n.links++
				case tagChainIndex:
					n.indexes++
				}
			}
		case TypeCalendarChain:
			n.calendarLinks += max(tlv.Count(value), 0)
		}
	}
	return n
}

// parsedSignature holds a signature and its single parts in one allocation.
type parsedSignature struct {
	sig  Signature
	cal  CalendarChain
	auth CalendarAuthRecord
}

func signatureFromElements(e tlv.Element) (*Signature, error) {
	const where = "signature"
	n := countSignatureParts(e.Value)
	block := new(parsedSignature)
	s := &block.sig
	*s = Signature{Raw: e.Raw, AggregationChains: make([]*AggregationChain, 0, n.chains)}
	chains := make([]AggregationChain, n.chains)
	// Room for every chain's links and index entries, counted above; each
	// chain takes its part from the front. A count that was short (it
	// cannot be: both walks read the same headers) would only cost an
	// allocation.
	links := make([]Link, n.links)
	indexes := make([]uint64, n.indexes)
	var err error
	for rest := e.Value; len(rest) > 0 && err == nil; {
		c, r, rerr := tlv.Read(rest)
		if rerr != nil {
			return nil, formatErr(where, "at offset %d: %v", len(e.Value)-len(rest), rerr)
		}
		rest = r
		switch c.Type {
		case TypeAggregationChain:
			var ch *AggregationChain
			if i := len(s.AggregationChains); i < len(chains) {
				ch = &chains[i]
			} else {
				ch = new(AggregationChain)
			}
			if err = parseAggregationChainInto(ch, c, links[:0], indexes[:0]); err == nil {
				links = links[min(len(ch.Links), len(links)):]
				indexes = indexes[min(len(ch.ChainIndex), len(indexes)):]
				s.AggregationChains = append(s.AggregationChains, ch)
			}
		case TypeCalendarChain:
			if s.CalendarChain != nil {
				err = fmt.Errorf("repeated calendar chain")
				break
			}
			if err = parseCalendarChainInto(&block.cal, c, make([]CalendarLink, 0, n.calendarLinks)); err == nil {
				s.CalendarChain = &block.cal
			}
		case TypePublicationRecord:
			if s.PublicationRecord != nil {
				err = fmt.Errorf("repeated publication record")
				break
			}
			s.PublicationRecord, err = ParsePublicationRecord(c)
		case TypeCalendarAuthRecord:
			if s.CalendarAuthRecord != nil {
				err = fmt.Errorf("repeated calendar authentication record")
				break
			}
			if err = parseCalendarAuthRecordInto(&block.auth, c); err == nil {
				s.CalendarAuthRecord = &block.auth
			}
		case TypeAggregationAuth:
			if s.AggregationAuth != nil {
				err = fmt.Errorf("repeated aggregation authentication record")
				break
			}
			s.AggregationAuth = c.Raw
		case TypeRFC3161Record:
			if s.RFC3161 != nil {
				err = fmt.Errorf("repeated RFC 3161 record")
				break
			}
			s.RFC3161, err = parseRFC3161(c)
		default:
			if kerr := keepUnknown(where, c, &s.Unknown); kerr != nil {
				return nil, kerr
			}
		}
		if err != nil {
			err = nestErr(where, c.Type, err)
		}
	}
	if err != nil {
		return nil, err
	}
	switch {
	case len(s.AggregationChains) == 0:
		return nil, formatErr(where, "at least one aggregation chain is required")
	case s.PublicationRecord != nil && s.CalendarAuthRecord != nil:
		return nil, formatErr(where, "both a publication record and a calendar authentication record")
	case (s.PublicationRecord != nil || s.CalendarAuthRecord != nil) && s.CalendarChain == nil:
		return nil, formatErr(where, "a publication or authentication record needs a calendar chain")
	}
	// Lowest chain first: it has the longest chain index (docs/design/formats.md#chain-index).
	// Files are written in that order; sort a copy only when they are not.
	byIndexLen := func(a, b *AggregationChain) int { return len(b.ChainIndex) - len(a.ChainIndex) }
	s.sorted = s.AggregationChains
	if !slices.IsSortedFunc(s.sorted, byIndexLen) {
		s.sorted = slices.Clone(s.AggregationChains)
		slices.SortStableFunc(s.sorted, byIndexLen)
	}
	return s, nil
}

// Chains returns the aggregation chains from the lowest (the document's)
// to the highest (the calendar's input).
func (s *Signature) Chains() []*AggregationChain { return s.sorted }

// DocumentHash is the hash the signature signs: the RFC 3161 record's input
// if there is one, else the lowest aggregation chain's input.
func (s *Signature) DocumentHash() Imprint {
	if s.RFC3161 != nil {
		return s.RFC3161.InputHash
	}
	return s.sorted[0].InputHash
}

// SigningTime returns the aggregation time of the lowest chain, in POSIX seconds.
func (s *Signature) SigningTime() uint64 { return s.sorted[0].AggregationTime }

// SigningUTC returns the signing time as a time.Time in UTC.
func (s *Signature) SigningUTC() time.Time { return time.Unix(int64(s.SigningTime()), 0).UTC() }

// Metadata returns the identity records of the signature's links, lowest first.
func (s *Signature) Metadata() []*Metadata {
	var out []*Metadata
	for _, c := range s.sorted {
		for i := range c.Links {
			if m := c.Links[i].Metadata; m != nil {
				out = append(out, m)
			}
		}
	}
	return out
}

// Identity lists the client names recorded in the signature from the
// highest level down (as ksi-tool prints it: "GT :: GT :: client").
func (s *Signature) Identity() []string {
	var out []string
	for i := len(s.sorted) - 1; i >= 0; i-- {
		links := s.sorted[i].Links
		for j := len(links) - 1; j >= 0; j-- {
			switch l := &links[j]; {
			case l.Metadata != nil:
				out = append(out, l.Metadata.ClientID)
			case isLegacyID(l.Sibling):
				out = append(out, LegacyIDName(l.Sibling))
			}
		}
	}
	return out
}

// IsExtended reports whether the signature carries a publication record.
func (s *Signature) IsExtended() bool { return s.PublicationRecord != nil }

// Extend returns a copy of the signature with its calendar chain replaced
// by chain and its authentication record replaced by the publication
// record pub (a 0x803 record whose data equals the chain's output).
// The caller checks that the chain belongs to this signature.
func (s *Signature) Extend(chain *CalendarChain, pub *PublicationRecord) (*Signature, error) {
	if pub != nil && pub.Raw[0]&0x80 != 0 {
		if e, err := tlv.ReadOne(pub.Raw); err == nil && e.Type != TypePublicationRecord {
			if pub, err = pub.WithType(TypePublicationRecord); err != nil {
				return nil, err
			}
		}
	}
	parts := make([][]byte, 0, len(s.AggregationChains)+4)
	if s.RFC3161 != nil {
		parts = append(parts, s.RFC3161.Raw)
	}
	for _, c := range s.AggregationChains {
		parts = append(parts, c.Raw)
	}
	parts = append(parts, chain.Raw)
	if pub != nil {
		parts = append(parts, pub.Raw)
	}
	return SignatureFromElements(parts)
}

func parseCalendarAuthRecordInto(r *CalendarAuthRecord, e tlv.Element) error {
	const where = "calendar authentication record"
	*r = CalendarAuthRecord{Raw: e.Raw}
	var seenData, seenSig bool
	var err error
	err = fields(where, e.Value, nil, func(c tlv.Element) (bool, error) {
		switch c.Type {
		case tagPubDataIn:
			if err := once(&seenData, "published data"); err != nil {
				return true, err
			}
			r.PublishedData, err = ParsePublishedData(c)
			return true, err
		case tagSignatureData:
			if err := once(&seenSig, "signature data"); err != nil {
				return true, err
			}
			r.SignatureData, err = parseSignatureData(c)
			return true, err
		}
		return false, nil
	})
	if err != nil {
		return err
	}
	if !seenData || !seenSig {
		return formatErr(where, "published data and signature data are required")
	}
	return nil
}

func parseSignatureData(e tlv.Element) (SignatureData, error) {
	const where = "signature data"
	var d SignatureData
	var seenType, seenValue, seenID, seenURI bool
	var err error
	err = fields(where, e.Value, nil, func(c tlv.Element) (bool, error) {
		switch c.Type {
		case tagSigType:
			if err := once(&seenType, "signature type"); err != nil {
				return true, err
			}
			d.Type, err = c.UTF8()
			return true, err
		case tagSigValue:
			if err := once(&seenValue, "signature value"); err != nil {
				return true, err
			}
			d.Value = c.Value
			return true, nil
		case tagCertID:
			if err := once(&seenID, "certificate id"); err != nil {
				return true, err
			}
			d.CertificateID = c.Value
			return true, nil
		case tagCertRepoURI:
			if err := once(&seenURI, "certificate repository URI"); err != nil {
				return true, err
			}
			d.CertRepoURI, err = c.UTF8()
			return true, err
		}
		return false, nil
	})
	if err != nil {
		return SignatureData{}, err
	}
	if !seenType || !seenValue || !seenID {
		return SignatureData{}, formatErr(where, "signature type, value and certificate id are required")
	}
	return d, nil
}

// NewCalendarAuthRecord encodes a calendar authentication record.
func NewCalendarAuthRecord(pd PublishedData, sd SignatureData) (*CalendarAuthRecord, error) {
	b := tlv.NewBuilder(make([]byte, 0, 64+len(pd.Raw)+len(sd.Value)+len(sd.Type)))
	b.Begin(TypeCalendarAuthRecord, false, false)
	b.Raw(pd.Raw)
	b.Begin(tagSignatureData, false, false)
	b.UTF8(tagSigType, sd.Type)
	b.Bin(tagSigValue, sd.Value)
	b.Bin(tagCertID, sd.CertificateID)
	if sd.CertRepoURI != "" {
		b.UTF8(tagCertRepoURI, sd.CertRepoURI)
	}
	b.End()
	b.End()
	raw, err := b.Bytes()
	if err != nil {
		return nil, err
	}
	return &CalendarAuthRecord{PublishedData: pd, SignatureData: sd, Raw: raw}, nil
}

func parseRFC3161(e tlv.Element) (*RFC3161Record, error) {
	const where = "RFC 3161 record"
	r := &RFC3161Record{Raw: e.Raw}
	// Each element may appear once; all but the input data are required.
	var seenData, seenTime, seenInput, seenTSTPre, seenTSTSuf, seenTSTAlg, seenSAPre, seenSASuf, seenSAAlg bool
	bin := func(seen *bool, name string, dst *[]byte, c tlv.Element) (bool, error) {
		if err := once(seen, name); err != nil {
			return true, err
		}
		*dst = c.Value
		return true, nil
	}
	alg := func(seen *bool, name string, dst *HashAlg, c tlv.Element) (bool, error) {
		if err := once(seen, name); err != nil {
			return true, err
		}
		var err error
		*dst, err = readAlg(c)
		return true, err
	}
	var err error
	err = fields(where, e.Value, nil, func(c tlv.Element) (bool, error) {
		switch c.Type {
		case tagRFCAggrTime:
			if err := once(&seenTime, "aggregation time"); err != nil {
				return true, err
			}
			r.AggregationTime, err = c.Uint()
			return true, err
		case tagRFCChainIndex:
			if len(r.ChainIndex) >= maxChainIndexSize {
				return true, fmt.Errorf("more than %d chain index entries", maxChainIndexSize)
			}
			v, err := c.Uint()
			r.ChainIndex = append(r.ChainIndex, v)
			return true, err
		case tagRFCInputData:
			return bin(&seenData, "input data", &r.InputData, c)
		case tagRFCInputHashes:
			if err := once(&seenInput, "input hash"); err != nil {
				return true, err
			}
			r.InputHash, err = readImprint(c)
			return true, err
		case tagTSTInfoPrefix:
			return bin(&seenTSTPre, "TSTInfo prefix", &r.TSTInfoPrefix, c)
		case tagTSTInfoSuffix:
			return bin(&seenTSTSuf, "TSTInfo suffix", &r.TSTInfoSuffix, c)
		case tagTSTInfoAlg:
			return alg(&seenTSTAlg, "TSTInfo algorithm", &r.TSTInfoAlg, c)
		case tagSigAttrPrefix:
			return bin(&seenSAPre, "signed attributes prefix", &r.SigAttrPrefix, c)
		case tagSigAttrSuffix:
			return bin(&seenSASuf, "signed attributes suffix", &r.SigAttrSuffix, c)
		case tagSigAttrAlg:
			return alg(&seenSAAlg, "signed attributes algorithm", &r.SigAttrAlg, c)
		}
		return false, nil
	})
	if err != nil {
		return nil, err
	}
	if !seenTime || len(r.ChainIndex) == 0 || !seenInput || !seenTSTPre || !seenTSTSuf ||
		!seenTSTAlg || !seenSAPre || !seenSASuf || !seenSAAlg {
		return nil, formatErr(where, "a required element is missing")
	}
	return r, nil
}
