package verifier

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/tempel-ksi/tempel/ksi"
)

// ErrUntrustedPublicationsFile is returned (wrapped) when a publications
// file's signature, certificate chain or constraints do not check out.
var ErrUntrustedPublicationsFile = errors.New("verifier: publications file not trusted")

// Constraint requires a subject attribute of the publications file's
// signer certificate to have an exact value, e.g. E=publications@example.org.
type Constraint struct {
	OID   asn1.ObjectIdentifier
	Value string
}

func (c Constraint) String() string { return c.OID.String() + "=" + c.Value }

var constraintNames = map[string]string{
	"e": "1.2.840.113549.1.9.1", "email": "1.2.840.113549.1.9.1",
	"cn": "2.5.4.3", "cname": "2.5.4.3",
	"c": "2.5.4.6", "country": "2.5.4.6",
	"o": "2.5.4.10", "org": "2.5.4.10",
}

// ParseConstraint parses NAME=VALUE where NAME is E, CN, C, O (or the
// ksi-tool long forms email, cname, country, org) or a dotted OID.
func ParseConstraint(s string) (Constraint, error) {
	name, value, ok := strings.Cut(s, "=")
	if !ok || name == "" || value == "" {
		return Constraint{}, fmt.Errorf("verifier: certificate constraint %q is not NAME=VALUE", s)
	}
	if o, ok := constraintNames[strings.ToLower(strings.TrimSpace(name))]; ok {
		name = o
	}
	var oid asn1.ObjectIdentifier
	for _, p := range strings.Split(strings.TrimSpace(name), ".") {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 {
			return Constraint{}, fmt.Errorf("verifier: certificate constraint %q: %q is neither E, CN, C, O nor a dotted OID", s, name)
		}
		oid = append(oid, n)
	}
	if len(oid) < 2 {
		return Constraint{}, fmt.Errorf("verifier: certificate constraint %q: OID too short", s)
	}
	return Constraint{OID: oid, Value: value}, nil
}

// Trust says which publications files to believe: the signer must chain
// to one of Roots at Time and satisfy every constraint.
type Trust struct {
	Roots       *x509.CertPool
	Constraints []Constraint
	// Time at which certificates must be valid. Verification takes it as a
	// parameter; callers pass the current time explicitly.
	Time time.Time
}

// VerifyPublicationsFile checks the detached PKCS#7 signature of a
// publications file over its signed bytes, the signer's chain to the trust
// roots and the certificate constraints (docs/design/formats.md#publications-file).
func VerifyPublicationsFile(pf *ksi.PublicationsFile, trust Trust) error {
	if trust.Roots == nil {
		return fmt.Errorf("%w: no trust roots given", ErrUntrustedPublicationsFile)
	}
	if len(trust.Constraints) == 0 {
		return fmt.Errorf("%w: at least one certificate constraint is required (e.g. E=publications@example.org)", ErrUntrustedPublicationsFile)
	}
	if trust.Time.IsZero() {
		return fmt.Errorf("%w: no verification time given", ErrUntrustedPublicationsFile)
	}
	p7, err := pkcs7.Parse(pf.Signature)
	if err != nil {
		return fmt.Errorf("%w: signature is not PKCS#7: %v", ErrUntrustedPublicationsFile, err)
	}
	if len(p7.Signers) != 1 {
		return fmt.Errorf("%w: want exactly one signer, found %d", ErrUntrustedPublicationsFile, len(p7.Signers))
	}
	p7.Content = pf.SignedBytes()
	if err := p7.VerifyWithChainAtTime(trust.Roots, trust.Time); err != nil {
		return fmt.Errorf("%w: %v", ErrUntrustedPublicationsFile, err)
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return fmt.Errorf("%w: signer certificate not found", ErrUntrustedPublicationsFile)
	}
	for _, c := range trust.Constraints {
		if !subjectHas(signer, c) {
			return fmt.Errorf("%w: signer %q does not satisfy constraint %s", ErrUntrustedPublicationsFile, SubjectString(signer.Subject), c)
		}
	}
	return nil
}

func subjectHas(cert *x509.Certificate, c Constraint) bool {
	for _, n := range cert.Subject.Names {
		if n.Type.Equal(c.OID) {
			if v, ok := n.Value.(string); ok && v == c.Value {
				return true
			}
		}
	}
	return false
}

// LoadCertificates reads X.509 certificates from a PEM (one or more
// blocks) or DER file.
func LoadCertificates(path string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseCertificates(b)
}

// ParseCertificates parses PEM (one or more CERTIFICATE blocks) or DER.
func ParseCertificates(b []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	rest := b
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("verifier: certificate: %w", err)
		}
		out = append(out, c)
	}
	if len(out) > 0 {
		return out, nil
	}
	c, err := x509.ParseCertificate(b)
	if err != nil {
		return nil, fmt.Errorf("verifier: neither PEM certificates nor a DER certificate: %w", err)
	}
	return []*x509.Certificate{c}, nil
}

// SubjectString writes a certificate subject with the short names the
// reference tools use for constraints (E= for the e-mail address), so the
// value to pin can be read off directly.
func SubjectString(n pkix.Name) string {
	var parts []string
	for _, a := range n.Names {
		name := a.Type.String()
		for short, oid := range constraintShort {
			if oid == name {
				name = short
			}
		}
		parts = append(parts, fmt.Sprintf("%s=%v", name, a.Value))
	}
	return strings.Join(parts, ", ")
}

var constraintShort = map[string]string{
	"E": "1.2.840.113549.1.9.1", "CN": "2.5.4.3", "C": "2.5.4.6", "O": "2.5.4.10",
	"OU": "2.5.4.11", "L": "2.5.4.7", "ST": "2.5.4.8",
}
