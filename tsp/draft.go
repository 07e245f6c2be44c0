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
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
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
	d := &Draft{s: s, p: p, certReq: req.CertReq, genTime: genTime, imprint: req.Imprint}
	digest := req.Imprint.Digest()

	gt := genTime.AppendFormat(make([]byte, 0, 15), "20060102150405Z")
	b := cryptobyte.NewBuilder(make([]byte, 0, 96+len(policy)+len(req.HashAlgID)+len(digest)+len(req.Nonce)))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1Int64(1)
		b.AddBytes(policy)
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddBytes(req.HashAlgID)
			b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
				b.AddBytes(digest)
			})
		})
		b.AddASN1BigInt(serial)
		b.AddASN1(cbasn1.GeneralizedTime, func(b *cryptobyte.Builder) { b.AddBytes(gt) })
		b.AddBytes(accuracy1s)
		if req.Nonce != nil {
			b.AddASN1(cbasn1.INTEGER, func(b *cryptobyte.Builder) { b.AddBytes(req.Nonce) })
		}
	})
	if d.tstInfo, err = b.Bytes(); err != nil {
		return nil, fmt.Errorf("tsp: TSTInfo: %w", err)
	}
	// The hashedMessage is where the digest sits after the policy and the
	// algorithm identifier; find it by reading back what was written.
	if d.tstCut = imprintOffset(d.tstInfo); d.tstCut < 0 || !bytes.Equal(d.tstInfo[d.tstCut:d.tstCut+len(digest)], digest) {
		return nil, errors.New("tsp: TSTInfo: message imprint not found")
	}
	tstDigest := sha256.Sum256(d.tstInfo)
	d.buildAttrs(tstDigest[:])
	d.digest = sha256.Sum256(d.attrs)
	sa := append([]byte{byte(ksi.SHA2_256)}, d.digest[:]...)
	docDigest := sha256.Sum256(sa)
	d.doc = append(ksi.Imprint{byte(ksi.SHA2_256)}, docDigest[:]...)
	return d, nil
}

// imprintOffset returns the offset of the hashedMessage content in a
// TSTInfo, -1 if it cannot be read.
func imprintOffset(tst []byte) int {
	in := cryptobyte.String(tst)
	var body, mi, digest cryptobyte.String
	var skip cryptobyte.String
	var tag cbasn1.Tag
	if !in.ReadASN1(&body, cbasn1.SEQUENCE) ||
		!body.ReadAnyASN1Element(&skip, &tag) || // version
		!body.ReadAnyASN1Element(&skip, &tag) || // policy
		!body.ReadASN1(&mi, cbasn1.SEQUENCE) ||
		!mi.ReadAnyASN1Element(&skip, &tag) || // hash algorithm
		!mi.ReadASN1(&digest, cbasn1.OCTET_STRING) {
		return -1
	}
	return offsetIn(tst, digest)
}

// offsetIn returns the offset of sub, a subslice of b, in b.
func offsetIn(b, sub []byte) int { return cap(b) - cap(sub) }

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
// and returns the token: a ContentInfo holding the SignedData.
func (d *Draft) Token(sig []byte, ksig *ksi.Signature) ([]byte, error) {
	full, err := d.embed(ksig)
	if err != nil {
		return nil, err
	}
	return d.encode(sig, full), nil
}

// embed returns ksig's encoding with the RFC 3161 record put first.
func (d *Draft) embed(ksig *ksi.Signature) ([]byte, error) {
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
	digestLen := len(d.imprint) - 1
	outer, err := tlv.ReadOne(ksig.Raw)
	if err != nil {
		return nil, fmt.Errorf("tsp: KSI signature: %w", err)
	}
	b := tlv.NewBuilder(make([]byte, 0, len(ksig.Raw)+len(d.tstInfo)+len(d.attrs)+96))
	b.Begin(ksi.TypeSignature, false, false)
	b.Begin(ksi.TypeRFC3161Record, false, false)
	// Children in libksi's order (the conformance pack's rfc3161-signature.ksig).
	b.Uint(0x02, lowest.AggregationTime)
	b.Bin(0x05, d.imprint)
	b.Bin(0x10, d.tstInfo[:d.tstCut])
	b.Bin(0x11, d.tstInfo[d.tstCut+digestLen:])
	b.Uint(0x12, uint64(ksi.SHA2_256))
	b.Bin(0x13, d.attrs[:d.attrCut])
	b.Bin(0x14, d.attrs[d.attrCut+sha256.Size:])
	b.Uint(0x15, uint64(ksi.SHA2_256))
	for _, i := range lowest.ChainIndex {
		b.Uint(0x03, i)
	}
	b.End()
	b.Raw(outer.Value)
	b.End()
	return b.Bytes()
}
