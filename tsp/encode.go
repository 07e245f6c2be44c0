package tsp

import (
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

var (
	tagExplicit0 = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagImplicit0 = cbasn1.Tag(0).ContextSpecific().Constructed()
	tagImplicit1 = cbasn1.Tag(1).ContextSpecific().Constructed()
)

// sha256AlgID is the SHA-256 AlgorithmIdentifier without parameters
// (RFC 5754 §2).
var sha256AlgID = encode(func(b *cryptobyte.Builder) { addAlgID(b, oidSHA256, false) })

// encode writes the token: ContentInfo { signedData, SignedData }.
func (d *Draft) encode(sig, ksig []byte) []byte {
	p := d.p
	n := 160 + len(d.tstInfo) + len(d.attrs) + len(p.sid) + len(sig) + len(ksig)
	if d.certReq {
		n += len(p.certs)
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, n))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddASN1Int64(3)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddBytes(sha256AlgID) })
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
					b.AddASN1ObjectIdentifier(oidTSTInfo)
					b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
						b.AddASN1OctetString(d.tstInfo)
					})
				})
				if d.certReq {
					b.AddASN1(tagImplicit0, func(b *cryptobyte.Builder) { b.AddBytes(p.certs) })
				}
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						addSignerInfoHead(b, p, d.attrs, sig)
						addKSIAttrs(b, nil, ksig)
					})
				})
			})
		})
	})
	return b.BytesOrPanic()
}

// addSignerInfoHead adds a SignerInfo's fields up to its signature.
func addSignerInfoHead(b *cryptobyte.Builder, p *prepared, attrs, sig []byte) {
	b.AddASN1Int64(1)
	b.AddBytes(p.sid)
	b.AddBytes(sha256AlgID)
	// The signed attributes, [0] IMPLICIT instead of the SET tag they
	// were signed with.
	b.AddUint8(uint8(tagImplicit0))
	b.AddBytes(attrs[1:])
	b.AddBytes(p.sigAlg)
	b.AddASN1OctetString(sig)
}

// addKSIAttrs adds the unsigned attributes: others as they were, then
// the KSI signature.
func addKSIAttrs(b *cryptobyte.Builder, others [][]byte, ksig []byte) {
	b.AddASN1(tagImplicit1, func(b *cryptobyte.Builder) {
		for _, o := range others {
			b.AddBytes(o)
		}
		b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.OBJECT_IDENTIFIER, func(b *cryptobyte.Builder) { b.AddBytes(oidKSIContent) })
			b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) { b.AddASN1OctetString(ksig) })
		})
	})
}

// Granted wraps a token in a TimeStampResp with status granted.
func Granted(token []byte) []byte {
	out := make([]byte, 0, len(token)+12)
	status := []byte{0x30, 0x03, 0x02, 0x01, statusGranted}
	out = appendHeader(out, 0x30, len(status)+len(token))
	out = append(out, status...)
	return append(out, token...)
}
