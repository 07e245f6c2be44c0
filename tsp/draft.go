package tsp

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// Draft is a token whose content is fixed: its TSTInfo and signed
// attributes. What remains is the TSA key's signature ([Draft.Sign]) and
// the KSI signature of [Draft.Document] ([Draft.Token]), which can be
// made concurrently.
type Draft struct {
	s       *Signer
	p       *prepared
	certReq bool
	genTime time.Time
	imprint ksi.Imprint

	tstInfo []byte
	tstCut  int // offset of the hashedMessage in tstInfo
	attrs   []byte
	attrCut int // offset of the messageDigest value in attrs
	digest  [sha256.Size]byte
	doc     ksi.Imprint
}

// accuracy1s is Accuracy ::= SEQUENCE { seconds 1 }.
var accuracy1s = []byte{0x30, 0x03, 0x02, 0x01, 0x01}

// Draft fixes the token for req: serial (positive, unique per TSA),
// genTime (the calendar second the document will be aggregated in;
// truncated to the second). A policy the TSA does not serve is a
// *Failure (unacceptedPolicy).
func (s *Signer) Draft(req *Request, serial *big.Int, genTime time.Time) (*Draft, error) {
	p, err := s.prepare()
	if err != nil {
		return nil, err
	}
	if req == nil {
		return nil, errors.New("tsp: no request")
	}
	if serial == nil || serial.Sign() <= 0 {
		return nil, errors.New("tsp: serial number must be positive")
	}
	policy, err := s.policyFor(p, req.Policy)
	if err != nil {
		return nil, err
	}
	alg := req.Imprint.Alg()
	if !alg.Supported() || len(req.HashAlgID) == 0 {
		return nil, fmt.Errorf("tsp: request without a supported message imprint")
	}
	genTime = genTime.Truncate(time.Second).UTC()
	if y := genTime.Year(); y < 1970 || y > 9999 {
		return nil, fmt.Errorf("tsp: genTime %s out of range", genTime)
	}
	d := &Draft{s: s, p: p, certReq: req.CertReq, genTime: genTime, imprint: req.Imprint}

	d.tstInfo, d.tstCut = appendTSTInfo(nil, policy, p.extensions, req, serial, genTime)
	tstDigest := sha256.Sum256(d.tstInfo)
	d.buildAttrs(tstDigest[:])
	d.digest = sha256.Sum256(d.attrs)
	var sa [1 + sha256.Size]byte
	sa[0] = byte(ksi.SHA2_256)
	copy(sa[1:], d.digest[:])
	docDigest := sha256.Sum256(sa[:])
	d.doc = append(make(ksi.Imprint, 0, len(sa)), byte(ksi.SHA2_256))
	d.doc = append(d.doc, docDigest[:]...)
	return d, nil
}

// buildAttrs encodes the signed attributes (as the SET OF the key signs)
// with the TSTInfo digest, and records where that digest sits.
func (d *Draft) buildAttrs(tstDigest []byte) {
	md := make([]byte, 0, 2+15+len(tstDigest))
	md = append(md, 0x30, byte(13+2+len(tstDigest)), 0x06, 0x09)
	md = append(md, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x09, 0x04) // messageDigest
	md = append(md, 0x31, byte(2+len(tstDigest)), 0x04, byte(len(tstDigest)))
	md = append(md, tstDigest...)
	attrs := [3][]byte{d.p.ctAttr, md, d.p.certAttr}
	// DER orders a SET OF by encoding; the three differ in the first bytes.
	for i := 1; i < len(attrs); i++ {
		for j := i; j > 0 && bytes.Compare(attrs[j-1], attrs[j]) > 0; j-- {
			attrs[j-1], attrs[j] = attrs[j], attrs[j-1]
		}
	}
	n := len(attrs[0]) + len(attrs[1]) + len(attrs[2])
	out := appendHeader(make([]byte, 0, 4+n), 0x31, n)
	for _, a := range attrs {
		if &a[0] == &md[0] {
			d.attrCut = len(out) + len(a) - len(tstDigest)
		}
		out = append(out, a...)
	}
	d.attrs = out
}

// appendHeader appends a DER tag and definite length.
func appendHeader(dst []byte, tag byte, n int) []byte {
	switch {
	case n < 0x80:
		return append(dst, tag, byte(n))
	case n < 0x100:
		return append(dst, tag, 0x81, byte(n))
	case n < 0x10000:
		return append(dst, tag, 0x82, byte(n>>8), byte(n))
	default:
		return append(dst, tag, 0x83, byte(n>>16), byte(n>>8), byte(n))
	}
}

// Document returns the leaf to aggregate: SHA-256 over the imprint of
// the signed attributes' SHA-256 digest (ksi-spec §4.5).
func (d *Draft) Document() ksi.Imprint { return d.doc }

// GenTime returns the token's genTime.
func (d *Draft) GenTime() time.Time { return d.genTime }

// Sign returns the TSA key's signature over the signed attributes.
func (d *Draft) Sign() ([]byte, error) {
	sig, err := d.s.Key.Sign(rand.Reader, d.digest[:], d.p.hash)
	if err != nil {
		return nil, fmt.Errorf("tsp: signing: %w", err)
	}
	return sig, nil
}

// Token checks that ksig signs [Draft.Document] in second genTime,
// makes it the token's KSI signature (with the RFC 3161 record first)
// and returns the token: a ContentInfo holding the SignedData. sig is the
// result of [Draft.Sign].
func (d *Draft) Token(sig []byte, ksig *ksi.Signature) ([]byte, error) {
	return d.appendToken(nil, sig, ksig)
}

// Response is [Granted] of [Draft.Token], written without the copy.
func (d *Draft) Response(sig []byte, ksig *ksi.Signature) ([]byte, error) {
	return d.appendToken(grantedStatus, sig, ksig)
}

// grantedStatus marks appendToken's dst as a TimeStampResp to head.
var grantedStatus = []byte{0x30, 0x03, 0x02, 0x01, statusGranted}

// PlainToken returns the token without a KSI signature: a ContentInfo
// holding the SignedData with no unsigned attributes, as a TSA that only
// signs answers. It is what the benchmarks' baseline responder issues;
// a Tempel token always carries its KSI signature ([Draft.Token]).
func (d *Draft) PlainToken(sig []byte) ([]byte, error) {
	return d.assemble(nil, sig, nil)
}

// PlainResponse is [Granted] of [Draft.PlainToken], written without the
// copy.
func (d *Draft) PlainResponse(sig []byte) ([]byte, error) {
	return d.assemble(grantedStatus, sig, nil)
}

// ksiAttr is the KSI signature attribute of a token being written: the
// RFC 3161 record and the rest of the signature's content.
type ksiAttr struct {
	rec     rfcRecord
	body    []byte // the signature's content after the record
	content int    // the signature TLV's content size
	size    int    // the whole signature TLV's size
}

// appendToken writes the token, after a TimeStampResp header when status
// is grantedStatus (nil: the bare token).
func (d *Draft) appendToken(status, sig []byte, ksig *ksi.Signature) ([]byte, error) {
	if ksig.RFC3161 != nil {
		return nil, errors.New("tsp: the KSI signature already has an RFC 3161 record")
	}
	lowest := ksig.Chains()[0]
	if !lowest.InputHash.Equal(d.doc) {
		return nil, fmt.Errorf("tsp: the KSI signature signs %s, not the token's document %s", lowest.InputHash.Hex(), d.doc.Hex())
	}
	if t := lowest.AggregationTime; t != uint64(d.genTime.Unix()) {
		return nil, fmt.Errorf("tsp: the KSI signature was aggregated at %d, the token's genTime is %d", t, d.genTime.Unix())
	}
	outer, err := tlv.ReadOne(ksig.Raw)
	if err != nil {
		return nil, fmt.Errorf("tsp: KSI signature: %w", err)
	}
	k := ksiAttr{rec: d.record(lowest), body: outer.Value}
	k.content = k.rec.size() + len(outer.Value)
	if k.content > tlv.MaxValueLen {
		return nil, fmt.Errorf("tsp: KSI signature of %d bytes is too large", k.content)
	}
	k.size = tlv.HeaderSize(ksi.TypeSignature, k.content) + k.content
	return d.assemble(status, sig, &k)
}

// assemble writes the token with the KSI signature attribute k (nil: no
// unsigned attributes), after a TimeStampResp header when status is
// grantedStatus.
func (d *Draft) assemble(status, sig []byte, k *ksiAttr) ([]byte, error) {
	p := d.p
	unsigned := 0
	siContent := len(derVersion1) + len(p.sid) + len(sha256AlgID) + len(d.attrs) + len(p.sigAlg) + derLen(len(sig))
	if k != nil {
		unsigned = derLen(len(derOIDKSI) + derLen(derLen(k.size)))
		siContent += derLen(unsigned)
	}
	eci := len(derOIDTSTInfo) + derLen(derLen(len(d.tstInfo)))
	sdContent := len(derSignedDataHead) + derLen(eci) + derLen(derLen(siContent))
	if d.certReq {
		sdContent += derLen(len(p.certs))
	}
	ciContent := len(derOIDSignedData) + derLen(derLen(sdContent))
	total := derLen(ciContent)
	if status != nil {
		total = derLen(len(status) + total)
	}

	out := make([]byte, 0, total)
	if status != nil {
		out = appendHeader(out, 0x30, len(status)+derLen(ciContent))
		out = append(out, status...)
	}
	out = appendHeader(out, 0x30, ciContent)
	out = append(out, derOIDSignedData...)
	out = appendHeader(out, 0xa0, derLen(sdContent))
	out = appendHeader(out, 0x30, sdContent)
	out = append(out, derSignedDataHead...)
	out = appendHeader(out, 0x30, eci)
	out = append(out, derOIDTSTInfo...)
	out = appendHeader(out, 0xa0, derLen(len(d.tstInfo)))
	out = appendHeader(out, 0x04, len(d.tstInfo))
	out = append(out, d.tstInfo...)
	if d.certReq {
		out = appendHeader(out, 0xa0, len(p.certs))
		out = append(out, p.certs...)
	}
	out = appendHeader(out, 0x31, derLen(siContent))
	out = appendHeader(out, 0x30, siContent)
	out = append(out, derVersion1...)
	out = append(out, p.sid...)
	out = append(out, sha256AlgID...)
	// The signed attributes, [0] IMPLICIT instead of the SET tag they
	// were signed with.
	out = append(out, 0xa0)
	out = append(out, d.attrs[1:]...)
	out = append(out, p.sigAlg...)
	out = appendHeader(out, 0x04, len(sig))
	out = append(out, sig...)
	if k != nil {
		out = appendHeader(out, 0xa1, unsigned)
		out = appendHeader(out, 0x30, len(derOIDKSI)+derLen(derLen(k.size)))
		out = append(out, derOIDKSI...)
		out = appendHeader(out, 0x31, derLen(k.size))
		out = appendHeader(out, 0x04, k.size)
		out = tlv.AppendKnownHeader(out, ksi.TypeSignature, k.content)
		out = k.rec.append(out)
		out = append(out, k.body...)
	}
	if len(out) != total {
		return nil, fmt.Errorf("tsp: internal error: token of %d bytes, sized %d", len(out), total)
	}
	return out, nil
}

// rfcRecord is the 0x806 record of a token: the TSTInfo and signed
// attributes cut around their digests.
type rfcRecord struct {
	time               uint64
	index              []uint64
	imprint            []byte
	tstPre, tstSuf     []byte
	attrsPre, attrsSuf []byte
}

func (d *Draft) record(lowest *ksi.AggregationChain) rfcRecord {
	digestLen := len(d.imprint) - 1
	return rfcRecord{
		time: lowest.AggregationTime, index: lowest.ChainIndex, imprint: d.imprint,
		tstPre: d.tstInfo[:d.tstCut], tstSuf: d.tstInfo[d.tstCut+digestLen:],
		attrsPre: d.attrs[:d.attrCut], attrsSuf: d.attrs[d.attrCut+sha256.Size:],
	}
}

func kLen(typ uint16, n int) int { return tlv.HeaderSize(typ, n) + n }

func (r *rfcRecord) content() int {
	n := kLen(0x02, tlv.UintLen(r.time)) + kLen(0x05, len(r.imprint)) +
		kLen(0x10, len(r.tstPre)) + kLen(0x11, len(r.tstSuf)) + kLen(0x12, 1) +
		kLen(0x13, len(r.attrsPre)) + kLen(0x14, len(r.attrsSuf)) + kLen(0x15, 1)
	for _, i := range r.index {
		n += kLen(0x03, tlv.UintLen(i))
	}
	return n
}

func (r *rfcRecord) size() int { return kLen(ksi.TypeRFC3161Record, r.content()) }

// append writes the record, its children in libksi's order (the
// conformance pack's rfc3161-signature.ksig).
func (r *rfcRecord) append(dst []byte) []byte {
	dst = tlv.AppendKnownHeader(dst, ksi.TypeRFC3161Record, r.content())
	dst = tlv.AppendKnownHeader(dst, 0x02, tlv.UintLen(r.time))
	dst = tlv.AppendUintValue(dst, r.time)
	for _, f := range []struct {
		typ uint16
		v   []byte
	}{{0x05, r.imprint}, {0x10, r.tstPre}, {0x11, r.tstSuf}, {0x12, sha256Alg}, {0x13, r.attrsPre}, {0x14, r.attrsSuf}, {0x15, sha256Alg}} {
		dst = tlv.AppendKnownHeader(dst, f.typ, len(f.v))
		dst = append(dst, f.v...)
	}
	for _, i := range r.index {
		dst = tlv.AppendKnownHeader(dst, 0x03, tlv.UintLen(i))
		dst = tlv.AppendUintValue(dst, i)
	}
	return dst
}

var sha256Alg = []byte{byte(ksi.SHA2_256)}
