package tsp

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"slices"
	"sync"

	"golang.org/x/crypto/cryptobyte"
	cbasn1 "golang.org/x/crypto/cryptobyte/asn1"
)

// Signer is a time-stamping authority: its key, certificate and
// policies. Fill the exported fields, then use it from any number of
// goroutines; do not change or copy it after the first Draft.
type Signer struct {
	// Key signs tokens: RSA (PKCS #1 v1.5 with SHA-256) or ECDSA P-256
	// (with SHA-256).
	Key crypto.Signer
	// Cert is Key's certificate; it must carry the timeStamping extended
	// key usage, critical.
	Cert *x509.Certificate
	// Chain is sent with Cert when a request asks for certificates:
	// Cert's issuers, nearest first (optional).
	Chain []*x509.Certificate
	// Policy is the policy of tokens whose request names none; nil means
	// DefaultPolicy.
	Policy asn1.ObjectIdentifier
	// Policies are further policies a request may ask for.
	Policies []asn1.ObjectIdentifier
	// QCStatement adds to every TSTInfo the qcStatements extension with
	// the statement esi4-qtstStatement-1 (ETSI EN 319 422 §9.1: "this is
	// a qualified electronic time-stamp"). Only a trusted list makes a
	// TSA qualified; the statement is for a TSA that is.
	QCStatement bool

	once sync.Once
	pre  *prepared
	err  error
}

// prepared is what every token of a Signer shares, encoded once.
type prepared struct {
	sid        []byte // IssuerAndSerialNumber
	certAttr   []byte // the signingCertificateV2 attribute
	ctAttr     []byte // the contentType attribute
	sigAlg     []byte // the SignerInfo's signatureAlgorithm
	certs      []byte // the content of SignedData's [0] certificates
	policy     asn1.ObjectIdentifier
	policyDER  []byte
	extensions []byte // the TSTInfo's [1] extensions, nil for none
	hash       crypto.Hash
	tsaCertLen int
}

func (s *Signer) prepare() (*prepared, error) {
	s.once.Do(func() { s.pre, s.err = s.build() })
	return s.pre, s.err
}

func (s *Signer) build() (*prepared, error) {
	if s.Key == nil || s.Cert == nil {
		return nil, errors.New("tsp: signer without key or certificate")
	}
	if !publicKeysEqual(s.Key.Public(), s.Cert.PublicKey) {
		return nil, errors.New("tsp: signer key does not match its certificate")
	}
	if err := CheckTSACert(s.Cert); err != nil {
		return nil, err
	}
	p := &prepared{hash: crypto.SHA256, policy: s.Policy}
	if p.policy == nil {
		p.policy = DefaultPolicy
	}
	var err error
	if p.policyDER, err = asn1.Marshal(p.policy); err != nil {
		return nil, fmt.Errorf("tsp: policy: %w", err)
	}
	switch k := s.Key.Public().(type) {
	case *rsa.PublicKey:
		p.sigAlg = encode(func(b *cryptobyte.Builder) { addAlgID(b, oidRSAEncryption, true) })
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return nil, fmt.Errorf("tsp: ECDSA key on %s, want P-256", k.Curve.Params().Name)
		}
		p.sigAlg = encode(func(b *cryptobyte.Builder) { addAlgID(b, oidECDSAWithSHA256, false) })
	default:
		return nil, fmt.Errorf("tsp: unsupported key type %T", k)
	}
	if s.QCStatement {
		p.extensions = qcStatementsExtension()
	}
	p.sid = encode(func(b *cryptobyte.Builder) { addIssuerSerial(b, s.Cert) })
	p.ctAttr = encode(func(b *cryptobyte.Builder) {
		addAttr(b, oidContentType, func(b *cryptobyte.Builder) { b.AddASN1ObjectIdentifier(oidTSTInfo) })
	})
	certHash := sha256.Sum256(s.Cert.Raw)
	p.certAttr = encode(func(b *cryptobyte.Builder) {
		addAttr(b, oidSigningCertV2, func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // SigningCertificateV2
				b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // certs
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // ESSCertIDv2, hash SHA-256 by default
						b.AddASN1OctetString(certHash[:])
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // IssuerSerial
							b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // GeneralNames
								b.AddASN1(cbasn1.Tag(4).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
									b.AddBytes(s.Cert.RawIssuer)
								})
							})
							b.AddASN1BigInt(s.Cert.SerialNumber)
						})
					})
				})
			})
		})
	})
	// DER orders a SET OF by encoding.
	certs := [][]byte{s.Cert.Raw}
	for _, c := range s.Chain {
		certs = append(certs, c.Raw)
	}
	slices.SortFunc(certs, bytes.Compare)
	p.certs = bytes.Join(certs, nil)
	p.tsaCertLen = len(s.Cert.Raw)
	return p, nil
}

// CheckTSACert checks what RFC 3161 §2.3 asks of a TSA certificate: the
// extended key usage extension is critical and names timeStamping only.
func CheckTSACert(c *x509.Certificate) error {
	for _, e := range c.Extensions {
		if !e.Id.Equal(oidExtKeyUsage) {
			continue
		}
		if !e.Critical {
			return fmt.Errorf("tsp: certificate %q: extended key usage is not critical", c.Subject)
		}
		if len(c.ExtKeyUsage) != 1 || c.ExtKeyUsage[0] != x509.ExtKeyUsageTimeStamping || len(c.UnknownExtKeyUsage) != 0 {
			return fmt.Errorf("tsp: certificate %q: extended key usage must be timeStamping only", c.Subject)
		}
		return nil
	}
	return fmt.Errorf("tsp: certificate %q has no extended key usage timeStamping", c.Subject)
}

// policyFor picks the token policy for a request (nil: the default).
func (s *Signer) policyFor(p *prepared, req asn1.ObjectIdentifier) ([]byte, error) {
	if req == nil || req.Equal(p.policy) {
		return p.policyDER, nil
	}
	for _, o := range s.Policies {
		if o.Equal(req) {
			return asn1.Marshal(o)
		}
	}
	return nil, fail(UnacceptedPolicy, "policy %s is not served by this TSA", req)
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	k, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && k.Equal(b)
}

func addIssuerSerial(b *cryptobyte.Builder, c *x509.Certificate) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddBytes(c.RawIssuer)
		b.AddASN1BigInt(c.SerialNumber)
	})
}

// addAttr adds an Attribute with one value.
func addAttr(b *cryptobyte.Builder, oid asn1.ObjectIdentifier, value cryptobyte.BuilderContinuation) {
	b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) {
		b.AddASN1ObjectIdentifier(oid)
		b.AddASN1(cbasn1.SET, value)
	})
}

func encode(f cryptobyte.BuilderContinuation) []byte {
	b := cryptobyte.NewBuilder(nil)
	f(b)
	return b.BytesOrPanic()
}

// OIDs of the qualified time-stamp statement (RFC 3739, ETSI EN 319 422).
var (
	oidQCStatements   = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 3}
	oidQTSTStatement1 = asn1.ObjectIdentifier{0, 4, 0, 19422, 1, 1}
)

// qcStatementsExtension is the TSTInfo's extensions field holding
// qcStatements with esi4-qtstStatement-1:
//
//	[1] IMPLICIT Extensions { Extension { qcStatements, OCTET STRING { QCStatements { QCStatement { esi4-qtstStatement-1 } } } } }
func qcStatementsExtension() []byte {
	return encode(func(b *cryptobyte.Builder) {
		b.AddASN1(cbasn1.Tag(1).ContextSpecific().Constructed(), func(b *cryptobyte.Builder) {
			b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // Extension
				b.AddASN1ObjectIdentifier(oidQCStatements)
				b.AddASN1(cbasn1.OCTET_STRING, func(b *cryptobyte.Builder) {
					b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // QCStatements
						b.AddASN1(cbasn1.SEQUENCE, func(b *cryptobyte.Builder) { // QCStatement
							b.AddASN1ObjectIdentifier(oidQTSTStatement1)
						})
					})
				})
			})
		})
	})
}
