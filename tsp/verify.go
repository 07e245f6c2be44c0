package tsp

import (
	"bytes"
	"crypto"
	"crypto/sha1" // ESSCertID (v1) names certificates by SHA-1 hash: matching a name, not trusting a signature
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// ErrNoKSI is returned for a token without an embedded KSI signature.
var ErrNoKSI = errors.New("tsp: the token carries no KSI signature")

var digestHashes = []struct {
	oid  asn1.ObjectIdentifier
	hash crypto.Hash
}{{oidSHA256, crypto.SHA256}, {oidSHA384, crypto.SHA384}, {oidSHA512, crypto.SHA512}}

func cryptoHash(oid asn1.ObjectIdentifier) (crypto.Hash, bool) {
	for _, d := range digestHashes {
		if d.oid.Equal(oid) {
			return d.hash, true
		}
	}
	return 0, false
}

// signatureAlgorithm maps a SignerInfo's algorithms to x509's.
func signatureAlgorithm(sigAlg asn1.ObjectIdentifier, h crypto.Hash) (x509.SignatureAlgorithm, bool) {
	rsa := map[crypto.Hash]x509.SignatureAlgorithm{crypto.SHA256: x509.SHA256WithRSA, crypto.SHA384: x509.SHA384WithRSA, crypto.SHA512: x509.SHA512WithRSA}
	ec := map[crypto.Hash]x509.SignatureAlgorithm{crypto.SHA256: x509.ECDSAWithSHA256, crypto.SHA384: x509.ECDSAWithSHA384, crypto.SHA512: x509.ECDSAWithSHA512}
	switch {
	case sigAlg.Equal(oidRSAEncryption):
		a, ok := rsa[h]
		return a, ok
	case sigAlg.Equal(oidSHA256WithRSA):
		return x509.SHA256WithRSA, h == crypto.SHA256
	case sigAlg.Equal(oidSHA384WithRSA):
		return x509.SHA384WithRSA, h == crypto.SHA384
	case sigAlg.Equal(oidSHA512WithRSA):
		return x509.SHA512WithRSA, h == crypto.SHA512
	case sigAlg.Equal(oidECDSAWithSHA256), sigAlg.Equal(oidECDSAWithSHA384), sigAlg.Equal(oidECDSAWithSHA512):
		a, ok := ec[h]
		return a, ok
	}
	return 0, false
}

// VerifyTSA checks the token's TSA layer: the messageDigest is the hash
// of the TSTInfo, the signing-certificate attribute names the signer's
// certificate, the signature over the signed attributes verifies with
// it, the certificate's extended key usage is timeStamping and critical,
// and it chains to roots at time at (the genTime when zero).
// intermediates may be nil; the token's own certificates are used too.
// signers are candidate signer certificates for a token that carries
// none.
func (t *Token) VerifyTSA(roots, intermediates *x509.CertPool, at time.Time, signers ...*x509.Certificate) error {
	h, ok := cryptoHash(t.DigestAlg)
	if !ok {
		return fmt.Errorf("tsp: digest algorithm %s is not supported", t.DigestAlg)
	}
	d := h.New()
	d.Write(t.TSTInfo)
	if !bytes.Equal(d.Sum(nil), t.messageDigest) {
		return errors.New("tsp: the messageDigest attribute is not the hash of the TSTInfo")
	}
	if !t.contentType {
		return errors.New("tsp: no contentType signed attribute (RFC 5652 §11.1)")
	}
	cert := t.signerCert(signers)
	if cert == nil {
		return errors.New("tsp: the signer's certificate is neither in the token nor given")
	}
	if err := t.checkCertID(cert); err != nil {
		return err
	}
	alg, ok := signatureAlgorithm(t.SignatureAlg, h)
	if !ok {
		return fmt.Errorf("tsp: signature algorithm %s with %s is not supported", t.SignatureAlg, t.DigestAlg)
	}
	if err := cert.CheckSignature(alg, t.SignedAttrs, t.Signature); err != nil {
		return fmt.Errorf("tsp: TSA signature: %w", err)
	}
	if err := CheckTSACert(cert); err != nil {
		return err
	}
	if at.IsZero() {
		at = t.GenTime
	}
	pool := x509.NewCertPool()
	if intermediates != nil {
		pool = intermediates.Clone()
	}
	for _, c := range t.Certificates {
		pool.AddCert(c)
	}
	opts := x509.VerifyOptions{Roots: roots, Intermediates: pool, CurrentTime: at, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}
	if _, err := cert.Verify(opts); err != nil {
		return fmt.Errorf("tsp: TSA certificate: %w", err)
	}
	return nil
}

func (t *Token) signerCert(extra []*x509.Certificate) *x509.Certificate {
	for _, list := range [][]*x509.Certificate{t.Certificates, extra} {
		for _, c := range list {
			if c != nil && bytes.Equal(c.RawIssuer, t.SignerIssuer) && c.SerialNumber.Cmp(t.SignerSerial) == 0 {
				return c
			}
		}
	}
	return nil
}

func (t *Token) checkCertID(c *x509.Certificate) error {
	if t.certID == nil {
		return errors.New("tsp: no signing-certificate attribute (RFC 5816)")
	}
	var sum []byte
	switch {
	case t.certIDHash.Equal(oidSHA1):
		s := sha1.Sum(c.Raw)
		sum = s[:]
	default:
		h, ok := cryptoHash(t.certIDHash)
		if !ok {
			return fmt.Errorf("tsp: ESSCertIDv2 hash algorithm %s is not supported", t.certIDHash)
		}
		d := h.New()
		d.Write(c.Raw)
		sum = d.Sum(nil)
	}
	if !bytes.Equal(sum, t.certID) {
		return fmt.Errorf("tsp: the signing-certificate attribute does not name %q", c.Subject)
	}
	return nil
}

// KSI parses the embedded KSI signature and checks it with
// [Token.CheckKSI]. It does not verify the signature's own chains: that
// is the verifier's work, with the message imprint as the document hash.
func (t *Token) KSI() (*ksi.Signature, error) {
	if t.KSISignature == nil {
		return nil, ErrNoKSI
	}
	sig, err := ksi.ParseSignature(t.KSISignature)
	if err != nil {
		return nil, fmt.Errorf("tsp: embedded KSI signature: %w", err)
	}
	if err := t.CheckKSI(sig); err != nil {
		return nil, err
	}
	return sig, nil
}

// CheckKSI checks that sig is a KSI signature of this token: its RFC 3161
// record's input hash is the message imprint, its prefixes and suffixes
// reassemble exactly this token's TSTInfo and signed attributes, and its
// aggregation time is the genTime.
func (t *Token) CheckKSI(sig *ksi.Signature) error {
	r := sig.RFC3161
	if r == nil {
		return errors.New("tsp: the KSI signature has no RFC 3161 record")
	}
	imprint, err := t.Imprint()
	if err != nil {
		return err
	}
	if !r.InputHash.Equal(imprint) {
		return fmt.Errorf("tsp: the KSI signature's input hash %s is not the message imprint %s", r.InputHash.Hex(), imprint.Hex())
	}
	if !reassembles(t.TSTInfo, r.TSTInfoPrefix, t.Digest, r.TSTInfoSuffix) {
		return errors.New("tsp: the RFC 3161 record does not reassemble the token's TSTInfo")
	}
	tst, err := r.TSTInfoAlg.Digest(t.TSTInfo)
	if err != nil {
		return fmt.Errorf("tsp: RFC 3161 record TSTInfo algorithm: %w", err)
	}
	if !reassembles(t.SignedAttrs, r.SigAttrPrefix, tst.Digest(), r.SigAttrSuffix) {
		return errors.New("tsp: the RFC 3161 record does not reassemble the token's signed attributes")
	}
	gen := uint64(t.GenTime.Unix())
	if r.AggregationTime != gen || sig.SigningTime() != gen || t.GenTime.Nanosecond() != 0 {
		return fmt.Errorf("tsp: genTime %s is not the KSI aggregation time %s", t.GenTime.Format(time.RFC3339Nano), sig.SigningUTC().Format(time.RFC3339))
	}
	return nil
}

func reassembles(whole, prefix, mid, suffix []byte) bool {
	return len(whole) == len(prefix)+len(mid)+len(suffix) &&
		bytes.HasPrefix(whole, prefix) &&
		bytes.Equal(whole[len(prefix):len(prefix)+len(mid)], mid) &&
		bytes.HasSuffix(whole, suffix)
}

// WithKSI returns the token with its KSI signature attribute replaced by
// ksig (an extended signature, say), which must be a KSI signature of
// this token ([Token.CheckKSI]). Everything but the unsigned attributes
// and the lengths around them is copied as it was, so the TSA signature
// stays valid.
func (t *Token) WithKSI(ksig []byte) ([]byte, error) {
	sig, err := ksi.ParseSignature(ksig)
	if err != nil {
		return nil, fmt.Errorf("tsp: KSI signature: %w", err)
	}
	if err := t.CheckKSI(sig); err != nil {
		return nil, err
	}
	b := cryptobyte.NewBuilder(make([]byte, 0, len(t.sdHead)+len(t.siHead)+len(ksig)+64))
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oidSignedData)
		b.AddASN1(tagExplicit0, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
				b.AddBytes(t.sdHead)
				b.AddASN1(cbasn1.SET, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
						b.AddBytes(t.siHead)
						addKSIAttrs(b, t.unsigned, ksig)
					})
				})
			})
		})
	})
	return b.Bytes()
}

// WithKSIResponse is [Token.WithKSI] for a token read with
// [ParseResponse]: the response with the new token and the same status.
func (t *Token) WithKSIResponse(ksig []byte) ([]byte, error) {
	tok, err := t.WithKSI(ksig)
	if err != nil {
		return nil, err
	}
	if t.status == nil {
		return Granted(tok), nil
	}
	out := appendHeader(make([]byte, 0, len(t.status)+len(tok)+6), 0x30, len(t.status)+len(tok))
	out = append(out, t.status...)
	return append(out, tok...), nil
}
