package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"time"
)

// keyURIScheme marks a key named by an RFC 7512 URI, kept in a PKCS#11
// token, rather than a PEM file.
const keyURIScheme = "pkcs11:"

// IsKeyURI reports whether a configured key is a pkcs11: URI.
func IsKeyURI(ref string) bool {
	return len(ref) >= len(keyURIScheme) && strings.EqualFold(ref[:len(keyURIScheme)], keyURIScheme)
}

// KeyOpener opens a key named by a pkcs11: URI (internal/hsm's
// Keys.Open). The package itself reads only files, so that it stays
// free of cgo.
type KeyOpener func(uri string) (crypto.Signer, error)

// open reads the key file at ref, or opens the token key ref names.
func (o KeyOpener) open(ref string) (crypto.Signer, error) {
	if !IsKeyURI(ref) {
		return readKeyFile(ref)
	}
	if o == nil {
		return nil, errors.New("pki: a pkcs11: key is configured but no PKCS#11 module is (--pkcs11-module)")
	}
	k, err := o(ref)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return k, nil
}

// UseTSAWith is [Set.UseTSA] for a key that may be a pkcs11: URI opened
// with open.
func (s *Set) UseTSAWith(certPath, keyRef string, open KeyOpener) error {
	certs, err := readCertFile(certPath)
	if err != nil {
		return err
	}
	key, err := open.open(keyRef)
	if err != nil {
		return err
	}
	return s.setTSA(certs[0], key, append(certs[1:], s.Intermediates...), certPath)
}

// TokenKeys are keys made in a token, to be certified by [IssueForKeys].
// TSA may be nil.
type TokenKeys struct {
	Calendar, Publisher, TSA crypto.Signer
}

// Issued are the certificates [IssueForKeys] made, each for the key of
// the same name; TSA is nil when no TSA key was given.
type Issued struct {
	Root                     *x509.Certificate
	Calendar, Publisher, TSA *x509.Certificate
}

// ErrNoRootKey is returned (wrapped) by [IssueForKeys] when the root key
// is not in the key directory: certificate requests are then the way.
var ErrNoRootKey = errors.New("pki: root key not present")

// IssueForKeys issues, with the development root of the key directory
// dir (root.pem and root.key), certificates for keys that live elsewhere
// (in a token): the calendar signer, the publisher and, when given, the
// TSA, with the same subjects and extensions as [Init] gives its own.
// The calendar key must be RSA-2048 or larger.
func IssueForKeys(dir string, opts InitOptions, keys TokenKeys) (*Issued, error) {
	opts, err := initDefaults(opts)
	if err != nil {
		return nil, err
	}
	if keys.Calendar == nil || keys.Publisher == nil {
		return nil, errors.New("pki: issue: a calendar and a publisher key are required")
	}
	if err := checkCalendarPublic(keys.Calendar.Public()); err != nil {
		return nil, err
	}
	rootPath, rootKeyPath := filepath.Join(dir, RootCertFile), filepath.Join(dir, RootKeyFile)
	roots, err := readCertFile(rootPath)
	if err != nil {
		return nil, err
	}
	if len(roots) != 1 {
		return nil, fmt.Errorf("pki: %s holds %d certificates, want exactly one root", rootPath, len(roots))
	}
	if !present(rootKeyPath) {
		return nil, fmt.Errorf("%w: %s is not there (kept offline?); write certificate requests and have the root's holder issue them", ErrNoRootKey, rootKeyPath)
	}
	rootKey, err := readKeyFile(rootKeyPath)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(roots[0].PublicKey, rootKey.Public()) {
		return nil, fmt.Errorf("pki: %s does not belong to %s", rootKeyPath, rootPath)
	}
	notBefore := opts.Now.Add(-ClockSkew).UTC().Truncate(time.Second)
	out := &Issued{Root: roots[0]}
	leaf := func(tmpl *x509.Certificate, key crypto.Signer, what string) (*x509.Certificate, error) {
		tmpl.NotBefore, tmpl.NotAfter = notBefore, notBefore.Add(LeafValidity)
		c, err := issue(tmpl, roots[0], key.Public(), rootKey)
		if err != nil {
			return nil, fmt.Errorf("pki: issue %s certificate: %w", what, err)
		}
		return c, nil
	}
	if out.Calendar, err = leaf(calendarTemplate(opts, "Tempel calendar signer"), keys.Calendar, "calendar"); err != nil {
		return nil, err
	}
	pubTmpl, err := publisherTemplate(opts)
	if err != nil {
		return nil, err
	}
	if out.Publisher, err = leaf(pubTmpl, keys.Publisher, "publisher"); err != nil {
		return nil, err
	}
	if keys.TSA != nil {
		tsaTmpl, err := tsaTemplate(opts, "Tempel TSA")
		if err != nil {
			return nil, err
		}
		if out.TSA, err = leaf(tsaTmpl, keys.TSA, "TSA"); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// CertificateRequests returns PEM certificate requests, signed by the
// keys themselves (in the token), with the subjects [IssueForKeys]
// would give: for an operator whose root key is elsewhere. The keys are
// named calendar, publisher and tsa.
func CertificateRequests(opts InitOptions, keys TokenKeys) (map[string][]byte, error) {
	opts, err := initDefaults(opts)
	if err != nil {
		return nil, err
	}
	if err := checkCalendarPublic(keys.Calendar.Public()); err != nil {
		return nil, err
	}
	pubTmpl, err := publisherTemplate(opts)
	if err != nil {
		return nil, err
	}
	reqs := []struct {
		name    string
		subject pkix.Name
		key     crypto.Signer
	}{
		{"calendar", calendarTemplate(opts, "Tempel calendar signer").Subject, keys.Calendar},
		{"publisher", pubTmpl.Subject, keys.Publisher},
	}
	if keys.TSA != nil {
		reqs = append(reqs, struct {
			name    string
			subject pkix.Name
			key     crypto.Signer
		}{"tsa", pkix.Name{CommonName: "Tempel TSA", Organization: []string{opts.Organization}}, keys.TSA})
	}
	out := map[string][]byte{}
	for _, r := range reqs {
		der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: r.subject}, r.key)
		if err != nil {
			return nil, fmt.Errorf("pki: %s certificate request: %w", r.name, err)
		}
		out[r.name] = pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE REQUEST", Bytes: der})
	}
	return out, nil
}

func checkCalendarPublic(pub crypto.PublicKey) error {
	k, ok := pub.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("pki: calendar key is %T, must be RSA", pub)
	}
	if bits := k.N.BitLen(); bits < MinCalendarKeyBits {
		return fmt.Errorf("pki: calendar key is RSA-%d, at least RSA-%d is required", bits, MinCalendarKeyBits)
	}
	return nil
}

// The templates below are the certificates [Init] issues for its own
// keys and [IssueForKeys] for a token's, without their validity.

func calendarTemplate(opts InitOptions, cn string) *x509.Certificate {
	return &x509.Certificate{
		Subject:            pkix.Name{CommonName: cn, Organization: []string{opts.Organization}},
		KeyUsage:           x509.KeyUsageDigitalSignature,
		SignatureAlgorithm: x509.SHA256WithRSA,
	}
}

func publisherTemplate(opts InitOptions) (*x509.Certificate, error) {
	// emailAddress is an IA5String (PKCS#9); Go would write a UTF8String.
	email, err := asn1.Marshal(asn1.RawValue{Tag: asn1.TagIA5String, Bytes: []byte(opts.Email)})
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	return &x509.Certificate{
		Subject: pkix.Name{
			CommonName:   "Tempel publications",
			Organization: []string{opts.Organization},
			ExtraNames:   []pkix.AttributeTypeAndValue{{Type: oidEmailAddress, Value: asn1.RawValue{FullBytes: email}}},
		},
		KeyUsage:           x509.KeyUsageDigitalSignature,
		SignatureAlgorithm: x509.SHA256WithRSA,
	}, nil
}

// tsaTemplate: extended key usage timeStamping only and critical (RFC
// 3161 §2.3).
func tsaTemplate(opts InitOptions, cn string) (*x509.Certificate, error) {
	eku, err := asn1.Marshal([]asn1.ObjectIdentifier{oidKPTimeStamping})
	if err != nil {
		return nil, fmt.Errorf("pki: TSA certificate: %w", err)
	}
	return &x509.Certificate{
		Subject:         pkix.Name{CommonName: cn, Organization: []string{opts.Organization}},
		KeyUsage:        x509.KeyUsageDigitalSignature | x509.KeyUsageContentCommitment,
		ExtraExtensions: []pkix.Extension{{Id: oidExtKeyUsage, Critical: true, Value: eku}},
	}, nil
}
