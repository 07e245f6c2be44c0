package ksi

import (
	"bytes"
	"fmt"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// PubFileMagic starts every publications file (docs/design/formats.md#publications-file). The elements
// after it form the value of a pseudo element 0x700 that is never encoded.
const PubFileMagic = "KSIPUBLF"

// TLV types of the publications file (docs/design/formats.md#publications-file). Publication records
// use [TypePubFileRecord].
const (
	TypePubFileHeader    = 0x701
	TypePubFileCert      = 0x702
	TypePubFileSignature = 0x704

	tagPFVersion  = 0x01
	tagPFCreated  = 0x02
	tagPFRepoURI  = 0x03
	tagPFCertID   = 0x01
	tagPFCertBody = 0x02
)

// MaxPublicationsFileSize bounds the input of [ParsePublicationsFile]. A
// real file grows by one record a month (about 100 bytes); 64 MiB leaves
// centuries of room while keeping a hostile download from exhausting
// memory.
const MaxPublicationsFileSize = 64 << 20

// PublicationsFileHeader is the 0x701 element of a publications file.
type PublicationsFileHeader struct {
	Version       uint64 // 1 in every known file; not checked
	CreationTime  uint64 // POSIX seconds
	RepositoryURI string // canonical download URL; empty when absent
	Unknown       []tlv.Element
	// Raw is the element as read. The builder writes Raw unchanged when it
	// is set and encodes the fields above only when it is nil.
	Raw []byte
}

// CertificateRecord is a 0x702 element: a certificate that signs calendar
// authentication records, and the id those records name it by.
type CertificateRecord struct {
	ID      []byte // usually 4 bytes; matches 0x805/0x0B/0x03 of a signature
	DER     []byte // X.509 certificate
	Unknown []tlv.Element
	// Raw is the element as read; the builder writes it unchanged when set.
	Raw []byte
}

// PublicationsFile is a parsed publications file (docs/design/formats.md#publications-file). Parsing
// checks structure only: the PKCS#7 signature over [PublicationsFile.SignedBytes]
// is verified elsewhere (package verifier), so a parsed file is not yet
// trusted.
//
// Byte slices alias the parsed input; do not modify it afterwards.
type PublicationsFile struct {
	Header       PublicationsFileHeader
	Certificates []CertificateRecord
	Publications []*PublicationRecord // 0x703 records in file order
	Signature    []byte               // value of 0x704: DER PKCS#7 SignedData, detached
	Unknown      []tlv.Element        // non-critical top-level elements of unknown type
	Raw          []byte               // the whole file

	signedLen int // length of the prefix of Raw that Signature covers
}

// Stages of the top-level ordering rule: header, certificates,
// publications, signature (docs/design/formats.md#publications-file).
const (
	pfStageStart = iota
	pfStageHeader
	pfStageCerts
	pfStagePubs
	pfStageSigned
)

// ParsePublicationsFile decodes a publications file: the magic, then the
// header (first), certificate records, publication records and the
// signature (last, exactly once), in that order. Unknown non-critical
// elements are kept in Unknown wherever they appear before the signature;
// unknown critical elements are an error. Every error wraps [ErrFormat].
func ParsePublicationsFile(b []byte) (*PublicationsFile, error) {
	const where = "publications file"
	if len(b) > MaxPublicationsFileSize {
		return nil, formatErr(where, "%d bytes, at most %d accepted", len(b), MaxPublicationsFileSize)
	}
	if !bytes.HasPrefix(b, []byte(PubFileMagic)) {
		return nil, formatErr(where, "missing %s magic", PubFileMagic)
	}
	f := &PublicationsFile{Raw: b}
	stage := pfStageStart
	off := len(PubFileMagic)
	for rest := b[off:]; len(rest) > 0; {
		e, next, err := tlv.Read(rest)
		if err != nil {
			return nil, formatErr(where, "at offset %d: %v", off, err)
		}
		if stage == pfStageSigned {
			// Bytes after the signature would be covered by nothing.
			return nil, formatErr(where, "element %#x at offset %d after the signature", e.Type, off)
		}
		if stage == pfStageStart && e.Type != TypePubFileHeader {
			return nil, formatErr(where, "first element is %#x, want header %#x", e.Type, TypePubFileHeader)
		}
		switch e.Type {
		case TypePubFileHeader:
			if stage != pfStageStart {
				return nil, formatErr(where, "repeated header at offset %d", off)
			}
			if f.Header, err = parsePubFileHeader(e); err != nil {
				return nil, err
			}
			stage = pfStageHeader
		case TypePubFileCert:
			if stage > pfStageCerts {
				return nil, formatErr(where, "certificate record at offset %d after a publication record", off)
			}
			c, err := parseCertificateRecord(e)
			if err != nil {
				return nil, err
			}
			f.Certificates = append(f.Certificates, c)
			stage = pfStageCerts
		case TypePubFileRecord:
			r, err := ParsePublicationRecord(e)
			if err != nil {
				return nil, fmt.Errorf("%w (record %d at offset %d)", err, len(f.Publications), off)
			}
			f.Publications = append(f.Publications, r)
			stage = pfStagePubs
		case TypePubFileSignature:
			f.Signature = e.Value
			f.signedLen = off
			stage = pfStageSigned
		default:
			if !e.NonCritical {
				return nil, formatErr(where, "unknown critical element %#x at offset %d", e.Type, off)
			}
			f.Unknown = append(f.Unknown, e)
		}
		off += len(e.Raw)
		rest = next
	}
	if stage != pfStageSigned {
		if stage == pfStageStart {
			return nil, formatErr(where, "no header")
		}
		return nil, formatErr(where, "no signature element %#x", TypePubFileSignature)
	}
	return f, nil
}

func parsePubFileHeader(e tlv.Element) (PublicationsFileHeader, error) {
	const where = "publications file header"
	h := PublicationsFileHeader{Raw: e.Raw}
	var seenV, seenC, seenU bool
	var err error
	err = fields(where, e.Value, &h.Unknown, func(c tlv.Element) (bool, error) {
		switch c.Type {
		case tagPFVersion:
			if err := once(&seenV, "version"); err != nil {
				return true, err
			}
			h.Version, err = c.Uint()
			return true, err
		case tagPFCreated:
			if err := once(&seenC, "creation time"); err != nil {
				return true, err
			}
			h.CreationTime, err = c.Uint()
			return true, err
		case tagPFRepoURI:
			if err := once(&seenU, "repository URI"); err != nil {
				return true, err
			}
			h.RepositoryURI, err = c.UTF8()
			return true, err
		}
		return false, nil
	})
	if err != nil {
		return PublicationsFileHeader{}, err
	}
	if !seenV || !seenC {
		return PublicationsFileHeader{}, formatErr(where, "version and creation time are required")
	}
	return h, nil
}

func parseCertificateRecord(e tlv.Element) (CertificateRecord, error) {
	const where = "certificate record"
	r := CertificateRecord{Raw: e.Raw}
	var seenID, seenCert bool
	err := fields(where, e.Value, &r.Unknown, func(c tlv.Element) (bool, error) {
		switch c.Type {
		case tagPFCertID:
			if err := once(&seenID, "certificate id"); err != nil {
				return true, err
			}
			r.ID = c.Value
			return true, nil
		case tagPFCertBody:
			if err := once(&seenCert, "certificate"); err != nil {
				return true, err
			}
			r.DER = c.Value
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		return CertificateRecord{}, err
	}
	if !seenID || !seenCert {
		return CertificateRecord{}, formatErr(where, "certificate id and certificate are required")
	}
	return r, nil
}

// SignedBytes returns the bytes the file's PKCS#7 signature covers: the
// magic and every element before the 0x704 element (docs/design/formats.md#publications-file). It
// aliases Raw.
func (f *PublicationsFile) SignedBytes() []byte {
	return f.Raw[:f.signedLen:f.signedLen]
}

// CertificateByID returns the first certificate record with the given id,
// or nil.
func (f *PublicationsFile) CertificateByID(id []byte) *CertificateRecord {
	for i := range f.Certificates {
		if bytes.Equal(f.Certificates[i].ID, id) {
			return &f.Certificates[i]
		}
	}
	return nil
}

// PublicationAt returns the first record (in file order) whose publication
// time is exactly t, or nil.
func (f *PublicationsFile) PublicationAt(t uint64) *PublicationRecord {
	for _, r := range f.Publications {
		if r.Data.Time == t {
			return r
		}
	}
	return nil
}

// FirstPublicationAfter returns the "suitable publication" for a signature
// made at time t (docs/design/formats.md#publications-file): the record with the smallest publication
// time that is >= t, or nil when the file has none. A publication at t
// itself qualifies, because a calendar root published at t already covers
// the second t. Records are meant to be in ascending order, but the file
// is not trusted to be: the whole list is searched, as libksi's
// KSI_PublicationsFile_getNearestPublication does. Of equal times the
// first in file order wins (libksi takes the last; a file with two
// records for one time is broken either way).
func (f *PublicationsFile) FirstPublicationAfter(t uint64) *PublicationRecord {
	var best *PublicationRecord
	for _, r := range f.Publications {
		if r.Data.Time >= t && (best == nil || r.Data.Time < best.Data.Time) {
			best = r
		}
	}
	return best
}

// Latest returns the record with the greatest publication time (the first
// of equal ones in file order), or nil for a file without publications.
func (f *PublicationsFile) Latest() *PublicationRecord {
	var best *PublicationRecord
	for _, r := range f.Publications {
		if best == nil || r.Data.Time > best.Data.Time {
			best = r
		}
	}
	return best
}

// BuildPublicationsFileContent encodes the signed part of a publications
// file: the magic, the header, the certificate records and the publication
// records, in that order (docs/design/formats.md#publications-file). Sign the result (detached PKCS#7)
// and pass both to [AppendPublicationsFileSignature].
//
// A header or certificate record with Raw set is written as Raw, so parsed
// parts re-encode byte for byte; set Raw to nil after changing a field.
// Publication records are always written as their Raw (0x703 records, see
// [PublicationRecord.WithType]). Records must be in ascending order of
// publication time, as readers expect.
func BuildPublicationsFileContent(h PublicationsFileHeader, certs []CertificateRecord, pubs []*PublicationRecord) ([]byte, error) {
	b := tlv.NewBuilder([]byte(PubFileMagic))

	if h.Raw != nil {
		if err := checkRaw(h.Raw, TypePubFileHeader); err != nil {
			return nil, fmt.Errorf("ksi: build publications file: header: %w", err)
		}
		b.Raw(h.Raw)
	} else {
		b.Begin(TypePubFileHeader, false, false)
		b.Uint(tagPFVersion, h.Version)
		b.Uint(tagPFCreated, h.CreationTime)
		if h.RepositoryURI != "" {
			b.UTF8(tagPFRepoURI, h.RepositoryURI)
		}
		for _, u := range h.Unknown {
			b.Raw(u.Raw)
		}
		b.End()
	}

	for i, c := range certs {
		if c.Raw != nil {
			if err := checkRaw(c.Raw, TypePubFileCert); err != nil {
				return nil, fmt.Errorf("ksi: build publications file: certificate record %d: %w", i, err)
			}
			b.Raw(c.Raw)
			continue
		}
		if len(c.ID) == 0 || len(c.DER) == 0 {
			return nil, fmt.Errorf("ksi: build publications file: certificate record %d: empty id or certificate", i)
		}
		b.Begin(TypePubFileCert, false, false)
		b.Bin(tagPFCertID, c.ID)
		b.Bin(tagPFCertBody, c.DER)
		for _, u := range c.Unknown {
			b.Raw(u.Raw)
		}
		b.End()
	}

	for i, r := range pubs {
		if r == nil {
			return nil, fmt.Errorf("ksi: build publications file: publication record %d is nil", i)
		}
		if err := checkRaw(r.Raw, TypePubFileRecord); err != nil {
			return nil, fmt.Errorf("ksi: build publications file: publication record %d: %w", i, err)
		}
		if i > 0 && r.Data.Time < pubs[i-1].Data.Time {
			return nil, fmt.Errorf("ksi: build publications file: publication record %d (time %d) is older than the one before it (%d)", i, r.Data.Time, pubs[i-1].Data.Time)
		}
		b.Raw(r.Raw)
	}

	out, err := b.Bytes()
	if err != nil {
		return nil, fmt.Errorf("ksi: build publications file: %w", err)
	}
	if len(out) > MaxPublicationsFileSize-4-tlv.MaxValueLen {
		return nil, fmt.Errorf("ksi: build publications file: content of %d bytes leaves no room for a signature under %d", len(out), MaxPublicationsFileSize)
	}
	return out, nil
}

// checkRaw makes sure raw is exactly one element of type typ, so that the
// builder cannot splice arbitrary bytes into a file.
func checkRaw(raw []byte, typ uint16) error {
	e, err := tlv.ReadOne(raw)
	if err != nil {
		return err
	}
	if e.Type != typ {
		return fmt.Errorf("element has type %#x, want %#x", e.Type, typ)
	}
	return nil
}

// AppendPublicationsFileSignature returns a complete publications file:
// content (from [BuildPublicationsFileContent]) followed by the 0x704
// element holding pkcs7DER, a detached PKCS#7 SignedData over content.
// The result is a new slice; content is not modified.
func AppendPublicationsFileSignature(content, pkcs7DER []byte) ([]byte, error) {
	if !bytes.HasPrefix(content, []byte(PubFileMagic)) {
		return nil, fmt.Errorf("ksi: publications file signature: content does not start with %s", PubFileMagic)
	}
	if len(pkcs7DER) == 0 {
		return nil, fmt.Errorf("ksi: publications file signature: empty signature")
	}
	out := make([]byte, len(content), len(content)+4+len(pkcs7DER))
	copy(out, content)
	// Type 0x704 needs the TLV16 header whatever the length.
	out, err := tlv.AppendHeader(out, TypePubFileSignature, false, false, len(pkcs7DER))
	if err != nil {
		return nil, fmt.Errorf("ksi: publications file signature: %w", err)
	}
	return append(out, pkcs7DER...), nil
}
