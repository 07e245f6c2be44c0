package pki

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
	"github.com/tempel-ksi/tempel/verifier"
)

// MinCalendarKeyBits is the smallest calendar signer RSA key accepted
// (docs/design/architecture.md#keys-and-trust).
const MinCalendarKeyBits = 2048

// CertIDLen is the length of [Set.CalendarCertID].
const CertIDLen = 4

// ErrNotValid is returned (wrapped) when a certificate is used outside its
// validity period.
var ErrNotValid = errors.New("pki: certificate not valid")

// oidEmailAddress is PKCS#9 emailAddress, the "E" of ksi-tool's --cnstr.
var oidEmailAddress = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// Set is Tempel's keys and certificates. Build it with [Init], [Load],
// [LoadOrInit] or [LoadFiles]; the fields are read-only afterwards.
type Set struct {
	// Root is the trust anchor that verifiers pin (ksi-tool -V root.pem).
	Root *x509.Certificate
	// RootPath is the file Root was read from or written to.
	RootPath string

	// Publisher signs the publications file; its subject carries the
	// e-mail address of [Set.Constraint].
	Publisher    *x509.Certificate
	PublisherKey crypto.Signer
	// Intermediates are the publisher's issuers below Root, issuer of
	// Publisher first; empty when Root issued Publisher directly. They are
	// embedded in the PKCS#7 signature next to Publisher.
	Intermediates []*x509.Certificate

	// Calendar signs calendar roots (calendar authentication records).
	// CalendarKey is an RSA key: a PEM file's or one in a token.
	Calendar    *x509.Certificate
	CalendarKey crypto.Signer

	// Members are the calendar certificates of the other members of a
	// replicated calendar, which sign their roots with their own keys:
	// each chains to Root, none is Calendar, none repeats. Empty for a
	// single calendar.
	Members []*x509.Certificate

	// Retired are calendar certificates retired by key rotations
	// (retired-calendar.pem, see [Rotate]), published so that roots
	// signed before each rotation keep verifying.
	Retired []RetiredCert

	// TSA is the RFC 3161 time-stamping certificate (tsa.pem), TSAKey its
	// key and TSAChain its issuers below Root; nil when the set has none,
	// and then TSAMissing says why. See [Set.TSASigner].
	TSA        *x509.Certificate
	TSAKey     crypto.Signer
	TSAChain   []*x509.Certificate
	TSAMissing string

	calendarID []byte
}

// newSet checks that the parts fit together and fills derived fields. It
// does not check validity periods; see [Set.CheckValidity].
func newSet(s *Set) (*Set, error) {
	if s.Root == nil || s.Publisher == nil || s.PublisherKey == nil || s.Calendar == nil || s.CalendarKey == nil {
		return nil, errors.New("pki: incomplete key set")
	}
	if !s.Root.IsCA {
		return nil, fmt.Errorf("pki: root certificate %q is not a CA certificate", s.Root.Subject)
	}

	// Publisher: key matches, usable for signing, chains to the root.
	if !publicKeysEqual(s.Publisher.PublicKey, s.PublisherKey.Public()) {
		return nil, fmt.Errorf("pki: publisher key does not belong to the publisher certificate %q", s.Publisher.Subject)
	}
	if ku := s.Publisher.KeyUsage; ku != 0 && ku&(x509.KeyUsageDigitalSignature|x509.KeyUsageContentCommitment) == 0 {
		return nil, fmt.Errorf("pki: publisher certificate %q does not allow digitalSignature", s.Publisher.Subject)
	}
	if email, cn := subjectEmail(s.Publisher), s.Publisher.Subject.CommonName; email == "" && cn == "" {
		return nil, fmt.Errorf("pki: publisher certificate subject %q has neither an e-mail address nor a common name for verifiers to pin", s.Publisher.Subject)
	}
	chain, err := orderChain(s.Publisher, s.Intermediates, s.Root, "publisher")
	if err != nil {
		return nil, err
	}
	s.Intermediates = chain

	// Calendar signer: what both reference SDKs accept (docs/design/formats.md#calendar-authentication-records).
	if !publicKeysEqual(s.Calendar.PublicKey, s.CalendarKey.Public()) {
		return nil, fmt.Errorf("pki: calendar key does not belong to the calendar certificate %q", s.Calendar.Subject)
	}
	calPub, ok := s.CalendarKey.Public().(*rsa.PublicKey)
	if !ok {
		return nil, fmt.Errorf("pki: calendar key is %s, must be RSA", keyKind(s.CalendarKey))
	}
	if bits := calPub.N.BitLen(); bits < MinCalendarKeyBits {
		return nil, fmt.Errorf("pki: calendar key is RSA-%d, at least RSA-%d is required", bits, MinCalendarKeyBits)
	}
	if s.Calendar.SignatureAlgorithm != x509.SHA256WithRSA {
		return nil, fmt.Errorf("pki: calendar certificate %q is signed with %v; verifiers compare it with the records' signature type, so it must be signed with %v",
			s.Calendar.Subject, s.Calendar.SignatureAlgorithm, x509.SHA256WithRSA)
	}
	if ku := s.Calendar.KeyUsage; ku != 0 && ku&x509.KeyUsageDigitalSignature == 0 {
		return nil, fmt.Errorf("pki: calendar certificate %q does not allow digitalSignature", s.Calendar.Subject)
	}
	sum := sha256.Sum256(s.Calendar.Raw)
	s.calendarID = sum[:CertIDLen:CertIDLen]
	return s, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ka, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && ka.Equal(b)
}

// orderChain returns the intermediates that link leaf to root, issuer of
// leaf first, dropping copies of root and certificates not on the path.
func orderChain(leaf *x509.Certificate, pool []*x509.Certificate, root *x509.Certificate, what string) ([]*x509.Certificate, error) {
	rest := make([]*x509.Certificate, 0, len(pool))
	for _, c := range pool {
		if !bytes.Equal(c.Raw, root.Raw) {
			rest = append(rest, c)
		}
	}
	var chain []*x509.Certificate
	cur := leaf
	for {
		if cur.CheckSignatureFrom(root) == nil {
			return chain, nil
		}
		next := -1
		for i, c := range rest {
			if cur.CheckSignatureFrom(c) == nil {
				next = i
				break
			}
		}
		if next < 0 {
			return nil, fmt.Errorf("pki: %s certificate %q does not chain to root %q (issuer %q not found among the intermediates)",
				what, leaf.Subject, root.Subject, cur.Issuer)
		}
		cur = rest[next]
		chain = append(chain, cur)
		rest = append(rest[:next], rest[next+1:]...)
	}
}

func subjectEmail(c *x509.Certificate) string {
	for _, n := range c.Subject.Names {
		if n.Type.Equal(oidEmailAddress) {
			if v, ok := n.Value.(string); ok {
				return v
			}
		}
	}
	return ""
}

// RootFingerprint is the SHA-256 fingerprint of the root certificate's
// DER: upper-case hex byte pairs joined by colons, exactly as
// `openssl x509 -noout -fingerprint -sha256 -in root.pem` prints it after
// the '='.
func (s *Set) RootFingerprint() string {
	return Fingerprint(s.Root)
}

// Fingerprint formats the SHA-256 fingerprint of c like
// [Set.RootFingerprint].
func Fingerprint(c *x509.Certificate) string {
	sum := sha256.Sum256(c.Raw)
	h := strings.ToUpper(hex.EncodeToString(sum[:]))
	var b strings.Builder
	for i := 0; i < len(h); i += 2 {
		if i > 0 {
			b.WriteByte(':')
		}
		b.WriteString(h[i : i+2])
	}
	return b.String()
}

// RootPEM returns the root certificate in PEM form.
func (s *Set) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: s.Root.Raw})
}

// Constraint returns the certificate constraint verifiers pin for
// publications files signed by this set, in ksi-tool --cnstr form:
// "E=<address>" from the publisher subject's emailAddress, or
// "CN=<name>" when the subject has no e-mail address.
func (s *Set) Constraint() string {
	if e := subjectEmail(s.Publisher); e != "" {
		return "E=" + e
	}
	return "CN=" + s.Publisher.Subject.CommonName
}

// CalendarCertID is the certificate id of the calendar signer: the first
// 4 bytes of SHA-256 over the calendar certificate's DER. Calendar
// authentication records name the certificate by it (0x805/0x0B/0x03) and
// the publications file carries the certificate under it (0x702/0x01).
// The id is stable for a certificate and changes when it is replaced.
func (s *Set) CalendarCertID() []byte {
	return bytes.Clone(s.calendarID)
}

// CertificateRecord returns the publications file's 0x702 record for the
// calendar signer certificate.
func (s *Set) CertificateRecord() ksi.CertificateRecord {
	return ksi.CertificateRecord{ID: s.CalendarCertID(), DER: bytes.Clone(s.Calendar.Raw)}
}

// CheckValidity reports an error wrapping [ErrNotValid] unless every
// certificate of the set (root, intermediates, publisher, calendar signer)
// is within its validity period at t. The other members' certificates are
// not checked: an expired one still verifies the roots it signed while
// it was valid.
func (s *Set) CheckValidity(t time.Time) error {
	certs := append([]*x509.Certificate{s.Root, s.Publisher, s.Calendar}, s.Intermediates...)
	for _, c := range certs {
		if err := validAt(c, t); err != nil {
			return err
		}
	}
	return nil
}

func validAt(c *x509.Certificate, t time.Time) error {
	if t.Before(c.NotBefore) || t.After(c.NotAfter) {
		return fmt.Errorf("%w: %q is valid from %s to %s, not at %s", ErrNotValid, c.Subject,
			c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339), t.UTC().Format(time.RFC3339))
	}
	return nil
}

// SignCalendarRoot signs a calendar root for a calendar authentication
// record (docs/design/formats.md#calendar-authentication-records): RSA PKCS#1 v1.5 with SHA-256 over
// publishedDataTLV, the exact bytes of the published-data element (type
// 0x10, header included, as [ksi.NewPublishedData] encodes it in Raw).
// The result names sha256WithRSAEncryption and [Set.CalendarCertID]; pass
// it to [ksi.NewCalendarAuthRecord].
//
// The element must parse as published data, and its publication time must
// lie within the calendar certificate's validity: verifiers reject a
// record signed outside it (KEY-03), so such a signature is refused here
// with an error wrapping [ErrNotValid].
func (s *Set) SignCalendarRoot(publishedDataTLV []byte) (ksi.SignatureData, error) {
	e, err := tlv.ReadOne(publishedDataTLV)
	if err != nil {
		return ksi.SignatureData{}, fmt.Errorf("pki: sign calendar root: %w", err)
	}
	if e.Type != ksi.TypePublishedData {
		return ksi.SignatureData{}, fmt.Errorf("pki: sign calendar root: element type %#x, want published data %#x", e.Type, ksi.TypePublishedData)
	}
	pd, err := ksi.ParsePublishedData(e)
	if err != nil {
		return ksi.SignatureData{}, fmt.Errorf("pki: sign calendar root: %w", err)
	}
	if pd.Time > 1<<62 {
		return ksi.SignatureData{}, fmt.Errorf("pki: sign calendar root: publication time %d out of range", pd.Time)
	}
	if err := validAt(s.Calendar, time.Unix(int64(pd.Time), 0)); err != nil {
		return ksi.SignatureData{}, fmt.Errorf("pki: sign calendar root: %w", err)
	}
	digest := sha256.Sum256(publishedDataTLV)
	sig, err := s.CalendarKey.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		return ksi.SignatureData{}, fmt.Errorf("pki: sign calendar root: %w", err)
	}
	// A key in a token signs out of sight: check its answer before
	// anything is built on it.
	pub, ok := s.Calendar.PublicKey.(*rsa.PublicKey)
	if !ok {
		return ksi.SignatureData{}, fmt.Errorf("pki: sign calendar root: calendar certificate key is %T, must be RSA", s.Calendar.PublicKey)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		return ksi.SignatureData{}, fmt.Errorf("pki: sign calendar root: the calendar key's signature does not verify: %w", err)
	}
	return ksi.SignatureData{
		Type:          verifier.SignatureAlgorithmOID,
		Value:         sig,
		CertificateID: s.CalendarCertID(),
	}, nil
}

// SignPublicationsFile returns a detached PKCS#7/CMS SignedData (DER) over
// content, the signed bytes of a publications file (from
// [ksi.BuildPublicationsFileContent]), for [ksi.AppendPublicationsFileSignature].
// It is signed by the publisher key with SHA-256 and embeds the publisher
// certificate and the intermediates (not the root, which verifiers bring).
//
// The signed attributes carry the signing time from the system clock,
// which verifiers check against the publisher certificate, so the chain
// must be valid now; otherwise an error wrapping [ErrNotValid] is
// returned rather than a file nobody can verify.
func (s *Set) SignPublicationsFile(content []byte) ([]byte, error) {
	if len(content) == 0 {
		return nil, errors.New("pki: sign publications file: empty content")
	}
	now := time.Now()
	for _, c := range append([]*x509.Certificate{s.Publisher, s.Root}, s.Intermediates...) {
		if err := validAt(c, now); err != nil {
			return nil, fmt.Errorf("pki: sign publications file: %w", err)
		}
	}
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		return nil, fmt.Errorf("pki: sign publications file: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if len(s.Intermediates) == 0 {
		err = sd.AddSigner(s.Publisher, s.PublisherKey, pkcs7.SignerInfoConfig{})
	} else {
		err = sd.AddSignerChain(s.Publisher, s.PublisherKey, s.Intermediates, pkcs7.SignerInfoConfig{})
	}
	if err != nil {
		return nil, fmt.Errorf("pki: sign publications file: %w", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("pki: sign publications file: %w", err)
	}
	return der, nil
}
