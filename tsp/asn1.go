package tsp

import (
	"encoding/asn1"
	"math/big"
	"strings"

	"github.com/tempel-ksi/tempel/ksi"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Object identifiers of RFC 3161, RFC 5652 (CMS), RFC 5816 and our own.
var (
	oidSignedData      = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 7, 2}
	oidTSTInfo         = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 1, 4}
	oidContentType     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 3}
	oidMessageDigest   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 4}
	oidSigningCert     = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 12}
	oidSigningCertV2   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 16, 2, 47}
	oidRSAEncryption   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 1}
	oidSHA256WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 11}
	oidSHA384WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 12}
	oidSHA512WithRSA   = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 1, 13}
	oidECDSAWithSHA256 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 2}
	oidECDSAWithSHA384 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 3}
	oidECDSAWithSHA512 = asn1.ObjectIdentifier{1, 2, 840, 10045, 4, 3, 4}
	oidSHA1            = asn1.ObjectIdentifier{1, 3, 14, 3, 2, 26}
	oidSHA256          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 1}
	oidSHA384          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 2}
	oidSHA512          = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 3}
	oidSHA3_224        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 7}
	oidSHA3_256        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 8}
	oidSHA3_384        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 9}
	oidSHA3_512        = asn1.ObjectIdentifier{2, 16, 840, 1, 101, 3, 4, 2, 10}
	oidRIPEMD160       = asn1.ObjectIdentifier{1, 3, 36, 3, 2, 1}
	oidExtKeyUsage     = asn1.ObjectIdentifier{2, 5, 29, 37}
)

// OIDKSISignature names the unsigned attribute that carries a token's KSI
// signature (value: an OCTET STRING holding the .ksig bytes). It is under
// a UUID arc (X.667, 2.25.<uuid>), so it needs no registration. Its
// third arc does not fit an int, so encoding/asn1 cannot hold it:
// oidKSIContent is its DER content, computed once.
const OIDKSISignature = "2.25.178338736215897964228409797456675204349.1.1"

var oidKSIContent = encodeOID(OIDKSISignature)

// encodeOID returns the DER content octets of a dotted OID whose arcs may
// exceed 64 bits.
func encodeOID(dotted string) []byte {
	arcs := strings.Split(dotted, ".")
	n := make([]*big.Int, len(arcs))
	for i, a := range arcs {
		var ok bool
		if n[i], ok = new(big.Int).SetString(a, 10); !ok {
			panic("tsp: bad OID " + dotted)
		}
	}
	first := new(big.Int).Mul(n[0], big.NewInt(40))
	first.Add(first, n[1])
	var out []byte
	for _, v := range append([]*big.Int{first}, n[2:]...) {
		var groups []byte
		x := new(big.Int).Set(v)
		for {
			groups = append(groups, byte(new(big.Int).And(x, big.NewInt(0x7f)).Int64()))
			x.Rsh(x, 7)
			if x.Sign() == 0 {
				break
			}
		}
		for i := len(groups) - 1; i >= 0; i-- {
			b := groups[i]
			if i > 0 {
				b |= 0x80
			}
			out = append(out, b)
		}
	}
	return out
}

// DefaultPolicy is the ETSI EN 319 421 best-practices time-stamp policy.
var DefaultPolicy = asn1.ObjectIdentifier{0, 4, 0, 2023, 1, 1}

// hashOIDs maps the message-imprint algorithms we accept to KSI's.
var hashOIDs = []struct {
	oid asn1.ObjectIdentifier
	alg ksi.HashAlg
}{
	{oidSHA256, ksi.SHA2_256},
	{oidSHA384, ksi.SHA2_384},
	{oidSHA512, ksi.SHA2_512},
	{oidSHA3_224, ksi.SHA3_224},
	{oidSHA3_256, ksi.SHA3_256},
	{oidSHA3_384, ksi.SHA3_384},
	{oidSHA3_512, ksi.SHA3_512},
	{oidRIPEMD160, ksi.RIPEMD160},
}

// hashAlgOf returns the KSI algorithm of a hash OID, false for one we do
// not accept (SHA-1 among them: deprecated in KSI).
func hashAlgOf(oid asn1.ObjectIdentifier) (ksi.HashAlg, bool) {
	for _, h := range hashOIDs {
		if h.oid.Equal(oid) {
			return h.alg, h.alg.Supported()
		}
	}
	return 0, false
}

// readAlgID reads an AlgorithmIdentifier: its OID and whether parameters
// are present and not NULL (a hash algorithm has none).
func readAlgID(s *cryptobyte.String) (oid asn1.ObjectIdentifier, raw []byte, ok bool) {
	var full cryptobyte.String
	if !s.ReadASN1Element(&full, cbasn1.SEQUENCE) {
		return nil, nil, false
	}
	raw = full
	var body cryptobyte.String
	if !full.ReadASN1(&body, cbasn1.SEQUENCE) || !body.ReadASN1ObjectIdentifier(&oid) {
		return nil, nil, false
	}
	if body.Empty() {
		return oid, raw, true
	}
	var null cryptobyte.String
	if !body.ReadASN1(&null, cbasn1.NULL) || !null.Empty() || !body.Empty() {
		return oid, raw, false
	}
	return oid, raw, true
}

func addAlgID(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, null bool) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		if null {
			b.AddASN1NULL()
		}
	})
}
