package pki

import (
	"bytes"
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// RetiredCalendarFile holds, in a key directory, the calendar
// certificates that signed calendar roots before a key rotation (0644):
// each re-issued by the root to end at its retirement, and published
// under the certificate id of the certificate it replaces. See [Rotate].
const RetiredCalendarFile = "retired-calendar.pem"

// MaxRetiredCerts bounds retired-calendar.pem: a rotation a month for
// twenty years, with room to spare.
const MaxRetiredCerts = 256

// ReplacesHeader starts the line before each retired certificate in
// retired-calendar.pem, "Replaces-SHA256: <hex>": the SHA-256 of the
// certificate it replaces, whose first [CertIDLen] bytes are the
// certificate id the calendar authentication records signed under the
// retired key carry.
const ReplacesHeader = "Replaces-SHA256"

// RetiredCert is a calendar certificate retired by a key rotation: Cert
// is the re-issued certificate (its NotAfter is the retirement time) and
// ID the certificate id it is published under, that of the certificate
// the key was used with.
type RetiredCert struct {
	Cert *x509.Certificate
	ID   []byte
}

// Staged names of a rotation: a new key and certificate are written under
// these before they replace the current ones.
func stagedName(name string) string {
	ext := filepath.Ext(name)
	return strings.TrimSuffix(name, ext) + "-next" + ext
}

// rotatedPairs are the certificate and key files [Rotate] can replace.
var rotatedPairs = []struct{ kind, cert, key string }{
	{"calendar", CalendarCertFile, CalendarKeyFile},
	{"publisher", PublisherCertFile, PublisherKeyFile},
	{"tsa", TSACertFile, TSAKeyFile},
	{"tls", TLSCertFile, TLSKeyFile},
}

// ErrRotationInterrupted is returned (wrapped) by [Load] for a key
// directory in which a key rotation was cut short: running [Rotate]
// again finishes it.
var ErrRotationInterrupted = errors.New("pki: a key rotation was interrupted")

// checkNoStaged refuses a key directory holding staged files of an
// unfinished rotation: depending on where it stopped, the current key no
// longer matches its certificate, or the current certificate is already
// retired, and signing on would make signatures no verifier accepts.
func checkNoStaged(dir string) error {
	for _, p := range rotatedPairs {
		for _, name := range []string{stagedName(p.cert), stagedName(p.key)} {
			if path := filepath.Join(dir, name); present(path) {
				return fmt.Errorf("%w: %s is there; run `tempel keys rotate` again to finish it", ErrRotationInterrupted, path)
			}
		}
	}
	return nil
}

// loadRetired reads a file of retired calendar certificates
// (retired-calendar.pem) into s.Retired.
func (s *Set) loadRetired(path string) error {
	rs, err := readRetired(path)
	if err != nil {
		return err
	}
	return s.setRetired(rs, path)
}

// readRetired parses a retired-calendar.pem: CERTIFICATE blocks, each
// preceded by its [ReplacesHeader] line. The line stands outside the
// block, where PEM allows explanatory text, so that OpenSSL and other
// tools read the certificates as they are.
func readRetired(path string) ([]RetiredCert, error) {
	b, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	var out []RetiredCert
	for rest := b; ; {
		i := bytes.Index(rest, []byte("-----BEGIN "))
		if i < 0 {
			if len(bytes.TrimSpace(rest)) > 0 {
				return nil, fmt.Errorf("pki: %s: text after certificate %d is not a PEM block", path, len(out))
			}
			return out, nil
		}
		n := len(out) + 1
		if len(out) == MaxRetiredCerts {
			return nil, fmt.Errorf("pki: %s holds more than %d certificates", path, MaxRetiredCerts)
		}
		preamble := rest[:i]
		blk, after := pem.Decode(rest)
		if blk == nil {
			return nil, fmt.Errorf("pki: %s: block %d is not a well-formed PEM block", path, n)
		}
		rest = after
		if blk.Type != "CERTIFICATE" {
			return nil, fmt.Errorf("pki: %s: block %d is %q, want CERTIFICATE", path, n, blk.Type)
		}
		sum, ok := replacedDigest(preamble)
		if !ok {
			return nil, fmt.Errorf("pki: %s: certificate %d is not preceded by a line %q with the SHA-256 of the certificate it replaces; only `tempel keys rotate` writes this file",
				path, n, ReplacesHeader+": <hex>")
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("pki: %s: certificate %d: %w", path, n, err)
		}
		out = append(out, RetiredCert{Cert: c, ID: sum[:CertIDLen:CertIDLen]})
	}
}

// replacedDigest finds the last [ReplacesHeader] line of the text before
// a retired certificate.
func replacedDigest(preamble []byte) ([]byte, bool) {
	lines := strings.Split(strings.TrimSpace(string(preamble)), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		v, ok := strings.CutPrefix(strings.TrimSpace(lines[i]), ReplacesHeader+":")
		if !ok {
			continue
		}
		sum, err := hex.DecodeString(strings.TrimSpace(v))
		return sum, err == nil && len(sum) == sha256.Size
	}
	return nil, false
}

// setRetired checks retired certificates against the set and keeps them.
// Each must be fit for a calendar signer and chain to the root (as a
// member's must), must not hold the current calendar key, and its id must
// name no other certificate the publications file carries: verifiers look
// certificates up by id alone.
func (s *Set) setRetired(rs []RetiredCert, source string) error {
	byID := map[string]*x509.Certificate{string(s.calendarID): s.Calendar}
	for _, m := range s.Members {
		byID[string(certID(m))] = m
	}
	for i, r := range rs {
		name := fmt.Sprintf("%s: certificate %d (%q, id %X)", source, i+1, r.Cert.Subject, r.ID)
		if err := checkMemberCert(r.Cert, s.Root, s.Intermediates); err != nil {
			return fmt.Errorf("pki: %s: %w", name, err)
		}
		if publicKeysEqual(r.Cert.PublicKey, s.Calendar.PublicKey) {
			return fmt.Errorf("pki: %s holds the current calendar key of %s: a key still in use cannot be retired", name, CalendarCertFile)
		}
		if prev, ok := byID[string(r.ID)]; ok {
			if prev.Equal(r.Cert) {
				continue
			}
			return fmt.Errorf("pki: %s: the id is also that of %q, which the publications file carries too (a members file from before the rotation?); verifiers could not tell them apart",
				name, prev.Subject)
		}
		byID[string(r.ID)] = r.Cert
		s.Retired = append(s.Retired, r)
	}
	return nil
}

// retiredPEM encodes a retired certificate after its [ReplacesHeader]
// line.
func retiredPEM(cert *x509.Certificate, replaced []byte) []byte {
	sum := sha256.Sum256(replaced)
	line := ReplacesHeader + ": " + hex.EncodeToString(sum[:]) + "\n"
	return append([]byte(line), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw})...)
}

// reissueRetired issues old's key a certificate that ends at the time of
// retirement (or at old's own end, if earlier), with old's subject, start
// and key usage. Verifiers check a calendar authentication record's time
// against the validity of the certificate they find under its id, so a
// retired key, were it stolen, cannot sign roots after its retirement
// that verify against this certificate.
func reissueRetired(old, root *x509.Certificate, rootKey crypto.Signer, at time.Time) (*x509.Certificate, error) {
	notAfter := at.UTC().Truncate(time.Second)
	if old.NotAfter.Before(notAfter) {
		notAfter = old.NotAfter
	}
	if !notAfter.After(old.NotBefore) {
		// The calendar's newest second precedes the certificate: its key
		// signed nothing, so it retires a second after it starts.
		notAfter = old.NotBefore.Add(time.Second)
	}
	tmpl := &x509.Certificate{
		RawSubject:         old.RawSubject,
		NotBefore:          old.NotBefore,
		NotAfter:           notAfter,
		KeyUsage:           old.KeyUsage,
		ExtKeyUsage:        old.ExtKeyUsage,
		SignatureAlgorithm: x509.SHA256WithRSA,
	}
	c, err := issue(tmpl, root, old.PublicKey, rootKey)
	if err != nil {
		return nil, fmt.Errorf("pki: rotate: re-issue the retired calendar certificate: %w", err)
	}
	return c, nil
}

// clearRotation removes what rotations left in dir: the retired
// certificates, which a new root did not issue, and staged files.
func clearRotation(dir string) error {
	names := []string{RetiredCalendarFile}
	for _, p := range rotatedPairs {
		names = append(names, stagedName(p.cert), stagedName(p.key))
	}
	for _, name := range names {
		if err := removeIfPresent(filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}

// removeIfPresent removes path, which need not exist.
func removeIfPresent(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// PublisherCertificate returns the certificate that signs publications
// files, so that a publisher can tell a file signed before a renewal.
func (s *Set) PublisherCertificate() *x509.Certificate { return s.Publisher }

// IssuedByRoot reports whether c chains to the set's root (through the
// intermediates): a calendar certificate of this PKI, which a
// publications file must not drop while signatures under it exist.
func (s *Set) IssuedByRoot(c *x509.Certificate) bool {
	_, err := orderChain(c, s.Intermediates, s.Root, "calendar")
	return err == nil
}
