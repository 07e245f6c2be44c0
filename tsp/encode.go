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
	out := make([]byte, 0, derLen(len(grantedStatus)+len(token)))
	out = appendHeader(out, 0x30, len(grantedStatus)+len(token))
	out = append(out, grantedStatus...)
	return append(out, token...)
}
