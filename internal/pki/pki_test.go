package pki

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// A lazily made development PKI that tests only read; tests that change
// files work on a copy (copyDir) or make their own. RSA key generation
// dominates the test time, so sets are shared where possible.
type lazySet struct {
	once sync.Once
	dir  string
	set  *Set
	err  error
}

// shared is the PKI under test; other is an unrelated one (a different
// root) for negative tests.
var shared, other lazySet

func TestMain(m *testing.M) {
	code := m.Run()
	for _, l := range []*lazySet{&shared, &other} {
		if l.dir != "" {
			os.RemoveAll(filepath.Dir(l.dir))
		}
	}
	if cluster.dir != "" {
		os.RemoveAll(cluster.dir)
	}
	os.Exit(code)
}

func (l *lazySet) get(t *testing.T) (*Set, string) {
	t.Helper()
	l.once.Do(func() {
		var tmp string
		if tmp, l.err = os.MkdirTemp("", "tempel-pki-test-"); l.err == nil {
			l.dir = filepath.Join(tmp, "keys")
			l.set, l.err = Init(l.dir, InitOptions{})
		}
	})
	if l.err != nil {
		t.Fatalf("Init: %v", l.err)
	}
	return l.set, l.dir
}

func sharedSet(t *testing.T) (*Set, string) { t.Helper(); return shared.get(t) }
func otherSet(t *testing.T) (*Set, string)  { t.Helper(); return other.get(t) }

// copyDir copies the files of a key directory, keeping their modes.
func copyDir(t *testing.T, src string) string {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "keys")
	if err := os.Mkdir(dst, DirMode); err != nil {
		t.Fatal(err)
	}
	for _, name := range allFiles {
		copyFile(t, filepath.Join(src, name), filepath.Join(dst, name))
	}
	return dst
}

func initIn(t *testing.T, opts InitOptions) (*Set, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "keys")
	s, err := Init(dir, opts)
	if err != nil {
		t.Fatalf("Init: %v", err)
	}
	return s, dir
}

func mode(t *testing.T, path string) fs.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestInitFilesAndModes(t *testing.T) {
	s, dir := sharedSet(t)
	if runtime.GOOS != "windows" {
		if m := mode(t, dir); m != DirMode {
			t.Errorf("directory mode %04o, want %04o", m, DirMode)
		}
		for _, k := range []string{RootKeyFile, PublisherKeyFile, CalendarKeyFile, TSAKeyFile} {
			if m := mode(t, filepath.Join(dir, k)); m != KeyMode {
				t.Errorf("%s mode %04o, want %04o", k, m, KeyMode)
			}
		}
		for _, c := range []string{RootCertFile, PublisherCertFile, CalendarCertFile} {
			// 0644 under the usual umask; a stricter umask may only remove bits.
			if m := mode(t, filepath.Join(dir, c)); m&^CertMode != 0 || m&0o600 != 0o600 {
				t.Errorf("%s mode %04o, want %04o", c, m, CertMode)
			}
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	if got, want := strings.Join(names, " "), "calendar.key calendar.pem publisher.key publisher.pem root.key root.pem tsa.key tsa.pem"; got != want {
		t.Errorf("directory holds %q, want %q (no temporary files left)", got, want)
	}
	for _, k := range []string{RootKeyFile, PublisherKeyFile, CalendarKeyFile, TSAKeyFile} {
		b, err := os.ReadFile(filepath.Join(dir, k))
		if err != nil {
			t.Fatal(err)
		}
		blk, rest := pem.Decode(b)
		if blk == nil || blk.Type != "PRIVATE KEY" || len(bytes.TrimSpace(rest)) != 0 {
			t.Fatalf("%s is not a single PEM PRIVATE KEY block", k)
		}
		if _, err := x509.ParsePKCS8PrivateKey(blk.Bytes); err != nil {
			t.Errorf("%s: not PKCS#8: %v", k, err)
		}
	}
	if s.RootPath != filepath.Join(dir, RootCertFile) {
		t.Errorf("RootPath = %q", s.RootPath)
	}
}

func TestInitCertificates(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	s, _ := initIn(t, InitOptions{Now: now, Email: "ops@example.org", Organization: "Example"})
	notBefore := now.Add(-time.Hour)

	r := s.Root
	if !r.IsCA || !r.BasicConstraintsValid || r.MaxPathLen != 0 || !r.MaxPathLenZero {
		t.Errorf("root: IsCA %v, MaxPathLen %d (zero %v)", r.IsCA, r.MaxPathLen, r.MaxPathLenZero)
	}
	if k, ok := r.PublicKey.(*rsa.PublicKey); !ok || k.N.BitLen() != RootKeyBits {
		t.Errorf("root key %T, want RSA-%d", r.PublicKey, RootKeyBits)
	}
	if r.CheckSignatureFrom(r) != nil || r.SignatureAlgorithm != x509.SHA256WithRSA {
		t.Errorf("root is not self-signed with SHA256WithRSA (%v)", r.SignatureAlgorithm)
	}
	if !r.NotBefore.Equal(notBefore) || !r.NotAfter.Equal(notBefore.Add(RootValidity)) {
		t.Errorf("root validity %s – %s", r.NotBefore, r.NotAfter)
	}

	for name, c := range map[string]*x509.Certificate{"publisher": s.Publisher, "calendar": s.Calendar} {
		if c.IsCA {
			t.Errorf("%s certificate is a CA", name)
		}
		if err := c.CheckSignatureFrom(r); err != nil || c.SignatureAlgorithm != x509.SHA256WithRSA {
			t.Errorf("%s not signed by the root with SHA256WithRSA: %v, %v", name, err, c.SignatureAlgorithm)
		}
		if c.KeyUsage != x509.KeyUsageDigitalSignature {
			t.Errorf("%s key usage %v, want digitalSignature", name, c.KeyUsage)
		}
		if !c.NotBefore.Equal(notBefore) || !c.NotAfter.Equal(notBefore.Add(LeafValidity)) {
			t.Errorf("%s validity %s – %s", name, c.NotBefore, c.NotAfter)
		}
		if c.Subject.Organization[0] != "Example" || c.Subject.CommonName == "" {
			t.Errorf("%s subject %q", name, c.Subject)
		}
	}
	if s.CalendarKey.Public().(*rsa.PublicKey).N.BitLen() < 2048 {
		t.Errorf("calendar key RSA-%d", s.CalendarKey.Public().(*rsa.PublicKey).N.BitLen())
	}
	if s.Root.SerialNumber.Cmp(s.Publisher.SerialNumber) == 0 || s.Publisher.SerialNumber.Cmp(s.Calendar.SerialNumber) == 0 {
		t.Error("serial numbers repeat")
	}

	// The e-mail address is a PKCS#9 emailAddress IA5String in the subject.
	var rdn pkix.RDNSequence
	if _, err := asn1.Unmarshal(s.Publisher.RawSubject, &rdn); err != nil {
		t.Fatal(err)
	}
	if subjectEmail(s.Publisher) != "ops@example.org" {
		t.Errorf("publisher subject %q has no emailAddress", s.Publisher.Subject)
	}
	ia5 := append([]byte{asn1.TagIA5String, byte(len("ops@example.org"))}, "ops@example.org"...)
	if !bytes.Contains(s.Publisher.RawSubject, ia5) {
		t.Error("emailAddress is not an IA5String")
	}
	if got := s.Constraint(); got != "E=ops@example.org" {
		t.Errorf("Constraint = %q", got)
	}

	if err := s.CheckValidity(now); err != nil {
		t.Errorf("CheckValidity(now): %v", err)
	}
	if err := s.CheckValidity(now.Add(-2 * time.Hour)); !errors.Is(err, ErrNotValid) {
		t.Errorf("CheckValidity before NotBefore = %v", err)
	}
	if err := s.CheckValidity(now.Add(LeafValidity)); !errors.Is(err, ErrNotValid) {
		t.Errorf("CheckValidity after leaf expiry = %v", err)
	}
}

func TestDefaultsAndIDs(t *testing.T) {
	s, _ := sharedSet(t)
	if got := s.Constraint(); got != "E="+DefaultEmail {
		t.Errorf("Constraint = %q", got)
	}
	if _, err := verifier.ParseConstraint(s.Constraint()); err != nil {
		t.Errorf("ParseConstraint(%q): %v", s.Constraint(), err)
	}
	if s.Publisher.Subject.Organization[0] != DefaultOrganization {
		t.Errorf("O = %q", s.Publisher.Subject.Organization)
	}
	if !regexp.MustCompile(`^([0-9A-F]{2}:){31}[0-9A-F]{2}$`).MatchString(s.RootFingerprint()) {
		t.Errorf("RootFingerprint = %q", s.RootFingerprint())
	}
	sum := sha256.Sum256(s.Calendar.Raw)
	id := s.CalendarCertID()
	if !bytes.Equal(id, sum[:4]) {
		t.Errorf("CalendarCertID = %X, want %X", id, sum[:4])
	}
	id[0] ^= 0xFF // callers cannot change the set's id
	if !bytes.Equal(s.CalendarCertID(), sum[:4]) {
		t.Error("CalendarCertID returns the set's own slice")
	}
	rec := s.CertificateRecord()
	if !bytes.Equal(rec.ID, sum[:4]) || !bytes.Equal(rec.DER, s.Calendar.Raw) || rec.Raw != nil {
		t.Errorf("CertificateRecord = %X, %d bytes", rec.ID, len(rec.DER))
	}
	if blk, _ := pem.Decode(s.RootPEM()); blk == nil || !bytes.Equal(blk.Bytes, s.Root.Raw) {
		t.Error("RootPEM does not hold the root")
	}
}

func TestLoadRoundTrip(t *testing.T) {
	s, dir := sharedSet(t)
	l, err := Load(dir)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if l.RootFingerprint() != s.RootFingerprint() || Fingerprint(l.Publisher) != Fingerprint(s.Publisher) || Fingerprint(l.Calendar) != Fingerprint(s.Calendar) {
		t.Error("loaded certificates differ")
	}
	if !bytes.Equal(l.CalendarCertID(), s.CalendarCertID()) || l.Constraint() != s.Constraint() || l.RootPath != s.RootPath {
		t.Error("loaded ids differ")
	}
	if !publicKeysEqual(l.CalendarKey.Public(), s.CalendarKey.Public()) || !publicKeysEqual(l.PublisherKey.Public(), s.PublisherKey.Public()) {
		t.Error("loaded keys differ")
	}
	if len(l.Intermediates) != 0 {
		t.Errorf("%d intermediates", len(l.Intermediates))
	}
	// What the loaded set signs verifies with the original certificates.
	pd := ksi.NewPublishedData(uint64(time.Now().Unix()), mustDigest(t, "root"))
	sd, err := l.SignCalendarRoot(pd.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Calendar.CheckSignature(x509.SHA256WithRSA, pd.Raw, sd.Value); err != nil {
		t.Errorf("loaded key's signature: %v", err)
	}
}

func TestLoadRefusesOpenKeyFiles(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no POSIX modes")
	}
	_, src := sharedSet(t)
	dir := copyDir(t, src)
	for _, k := range []string{PublisherKeyFile, CalendarKeyFile, RootKeyFile} {
		for _, m := range []fs.FileMode{0o644, 0o640, 0o604, 0o610} {
			p := filepath.Join(dir, k)
			if err := os.Chmod(p, m); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if !errors.Is(err, ErrKeyPermissions) || !strings.Contains(err.Error(), "chmod 600 "+p) {
				t.Errorf("%s mode %04o: Load error = %v, want ErrKeyPermissions telling to chmod 600", k, m, err)
			}
			if err := os.Chmod(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := os.Chmod(filepath.Join(dir, CalendarKeyFile), 0o400); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err != nil {
		t.Errorf("Load with a 0400 key: %v", err)
	}
}

func TestInitTwice(t *testing.T) {
	s1, dir := initIn(t, InitOptions{})
	_, err := Init(dir, InitOptions{})
	if err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second Init error = %v", err)
	}
	if l, err := Load(dir); err != nil || l.RootFingerprint() != s1.RootFingerprint() {
		t.Fatalf("files changed by the failed Init: %v", err)
	}
	// Force replaces everything, and a key file with a loose mode is
	// replaced by a new 0600 file rather than rewritten in place.
	if runtime.GOOS != "windows" {
		if err := os.Chmod(filepath.Join(dir, PublisherKeyFile), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	s2, err := Init(dir, InitOptions{Force: true})
	if err != nil {
		t.Fatalf("Init with Force: %v", err)
	}
	if s2.RootFingerprint() == s1.RootFingerprint() || bytes.Equal(s2.CalendarCertID(), s1.CalendarCertID()) {
		t.Error("Force did not make a new PKI")
	}
	if runtime.GOOS != "windows" {
		if m := mode(t, filepath.Join(dir, PublisherKeyFile)); m != KeyMode {
			t.Errorf("publisher.key mode %04o after Force", m)
		}
	}
	l, err := Load(dir)
	if err != nil || l.RootFingerprint() != s2.RootFingerprint() {
		t.Fatalf("Load after Force: %v", err)
	}
}

func TestInitRejectsBadEmail(t *testing.T) {
	for _, e := range []string{"nobody", "a b@c", "a@b,O=x", "ü@example.org"} {
		if _, err := Init(filepath.Join(t.TempDir(), "keys"), InitOptions{Email: e}); err == nil {
			t.Errorf("Init accepted e-mail %q", e)
		}
	}
}

func TestLoadOrInit(t *testing.T) {
	// An existing, empty directory is tightened to 0700.
	dir := filepath.Join(t.TempDir(), "data", "keys")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	s1, created, err := LoadOrInit(dir, InitOptions{})
	if err != nil || !created {
		t.Fatalf("first LoadOrInit: created %v, %v", created, err)
	}
	if m := mode(t, dir); runtime.GOOS != "windows" && m != DirMode {
		t.Errorf("directory mode %04o", m)
	}
	s2, created, err := LoadOrInit(dir, InitOptions{})
	if err != nil || created || s2.RootFingerprint() != s1.RootFingerprint() {
		t.Fatalf("second LoadOrInit: created %v, %v", created, err)
	}
	// root.key may be moved offline.
	if err := os.Rename(filepath.Join(dir, RootKeyFile), filepath.Join(t.TempDir(), RootKeyFile)); err != nil {
		t.Fatal(err)
	}
	if s3, created, err := LoadOrInit(dir, InitOptions{}); err != nil || created || s3.RootFingerprint() != s1.RootFingerprint() {
		t.Fatalf("LoadOrInit without root.key: created %v, %v", created, err)
	}
	// A partial set is neither completed nor replaced.
	if err := os.Remove(filepath.Join(dir, CalendarKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrInit(dir, InitOptions{}); err == nil || !strings.Contains(err.Error(), CalendarKeyFile) {
		t.Fatalf("LoadOrInit on a partial set: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, CalendarKeyFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Error("LoadOrInit recreated a missing key")
	}
}

func TestLoadRejectsMismatchedKeys(t *testing.T) {
	_, dir1 := sharedSet(t)
	_, dir2 := otherSet(t)
	for _, k := range []string{PublisherKeyFile, CalendarKeyFile, RootKeyFile} {
		t.Run(k, func(t *testing.T) {
			dir := t.TempDir()
			for _, name := range allFiles {
				src := dir1
				if name == k {
					src = dir2
				}
				copyFile(t, filepath.Join(src, name), filepath.Join(dir, name))
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), "belong") {
				t.Fatalf("Load with %s from another set: %v", k, err)
			}
			assertNoKeyMaterial(t, err, filepath.Join(dir, k))
		})
	}
}

func TestLoadKeyErrorsHideContent(t *testing.T) {
	_, src := sharedSet(t)
	dir := copyDir(t, src)
	p := filepath.Join(dir, CalendarKeyFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	blk.Bytes = blk.Bytes[:len(blk.Bytes)-10] // truncated DER
	writeKey(t, p, pem.EncodeToMemory(blk))
	_, err = Load(dir)
	if err == nil {
		t.Fatal("Load accepted a truncated key")
	}
	assertNoKeyMaterial(t, err, p)

	writeKey(t, p, []byte("not a key\n"))
	if _, err := Load(dir); err == nil || strings.Contains(err.Error(), "not a key") {
		t.Errorf("Load error = %v", err)
	}
	writeKey(t, p, pem.EncodeToMemory(&pem.Block{Type: "ENCRYPTED PRIVATE KEY", Bytes: []byte{1}}))
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "encrypted") {
		t.Errorf("Load of an encrypted key: %v", err)
	}
}

// assertNoKeyMaterial fails if err quotes any 12 consecutive characters
// of the key file's base64 body.
func assertNoKeyMaterial(t *testing.T, err error, keyFile string) {
	t.Helper()
	b, rerr := os.ReadFile(keyFile)
	if rerr != nil {
		t.Fatal(rerr)
	}
	var body string
	for _, line := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(line, "-----") {
			body += line
		}
	}
	msg := err.Error()
	for i := 0; i+12 <= len(body); i += 4 {
		if strings.Contains(msg, body[i:i+12]) {
			t.Fatalf("error quotes key material: %v", err)
		}
	}
}

func copyFile(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, fi.Mode().Perm())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeKey(t *testing.T, path string, data []byte) {
	t.Helper()
	os.Remove(path)
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func writeCert(t *testing.T, path string, certs ...*x509.Certificate) {
	t.Helper()
	var b []byte
	for _, c := range certs {
		b = append(b, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func writePKCS8(t *testing.T, path string, k crypto.PrivateKey) {
	t.Helper()
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	writeKey(t, path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
}

func mustDigest(t *testing.T, s string) ksi.Imprint {
	t.Helper()
	m, err := ksi.SHA2_256.Digest([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestSignCalendarRoot(t *testing.T) {
	s, _ := sharedSet(t)
	pd := ksi.NewPublishedData(uint64(time.Now().Unix()), mustDigest(t, "calendar root"))
	sd, err := s.SignCalendarRoot(pd.Raw)
	if err != nil {
		t.Fatal(err)
	}
	if sd.Type != "1.2.840.113549.1.1.11" { // verifier.SignatureAlgorithmOID
		t.Errorf("Type = %q", sd.Type)
	}
	if !bytes.Equal(sd.CertificateID, s.CalendarCertID()) {
		t.Errorf("CertificateID = %X", sd.CertificateID)
	}
	if pd.Raw[0] != 0x30 {
		t.Fatalf("published data header %#x, want 0x30", pd.Raw[0])
	}
	if err := s.Calendar.CheckSignature(x509.SHA256WithRSA, pd.Raw, sd.Value); err != nil {
		t.Errorf("CheckSignature over the published-data TLV: %v", err)
	}
	digest := sha256.Sum256(pd.Raw)
	if err := rsa.VerifyPKCS1v15(s.CalendarKey.Public().(*rsa.PublicKey), crypto.SHA256, digest[:], sd.Value); err != nil {
		t.Errorf("VerifyPKCS1v15: %v", err)
	}
	// Over the whole element, not its value or another encoding.
	if s.Calendar.CheckSignature(x509.SHA256WithRSA, pd.Raw[2:], sd.Value) == nil {
		t.Error("signature verifies over the value without the header")
	}

	if _, err := s.SignCalendarRoot(pd.Raw[:len(pd.Raw)-1]); err == nil {
		t.Error("signed a truncated element")
	}
	if _, err := s.SignCalendarRoot(append(bytes.Clone(pd.Raw), 0)); err == nil {
		t.Error("signed an element with a trailing byte")
	}
	rec, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, pd, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.SignCalendarRoot(rec.Raw); err == nil {
		t.Error("signed a publication record instead of published data")
	}
	late := ksi.NewPublishedData(uint64(s.Calendar.NotAfter.Add(time.Second).Unix()), mustDigest(t, "late"))
	if _, err := s.SignCalendarRoot(late.Raw); !errors.Is(err, ErrNotValid) {
		t.Errorf("signing after the certificate expires: %v, want ErrNotValid", err)
	}
	early := ksi.NewPublishedData(uint64(s.Calendar.NotBefore.Add(-time.Second).Unix()), mustDigest(t, "early"))
	if _, err := s.SignCalendarRoot(early.Raw); !errors.Is(err, ErrNotValid) {
		t.Errorf("signing before the certificate is valid: %v, want ErrNotValid", err)
	}

	// Concurrent use (run with -race).
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			pd := ksi.NewPublishedData(uint64(time.Now().Unix()), mustDigest(t, fmt.Sprint("root ", i)))
			sd, err := s.SignCalendarRoot(pd.Raw)
			if err == nil {
				err = s.Calendar.CheckSignature(x509.SHA256WithRSA, pd.Raw, sd.Value)
			}
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

// pubFile is a signed publications file built by the test.
type pubFile struct {
	content, sig, file []byte
	parsed             *ksi.PublicationsFile
	auth               *ksi.CalendarAuthRecord
	pubTime            uint64
}

// buildPubFile signs a calendar root, builds a calendar authentication
// record, and a publications file holding the calendar certificates (the
// members' too) and one publication, signed by the publisher.
func buildPubFile(t *testing.T, s *Set, now time.Time) pubFile {
	t.Helper()
	pubTime := uint64(now.Unix())
	pd := ksi.NewPublishedData(pubTime, mustDigest(t, "calendar root"))
	sd, err := s.SignCalendarRoot(pd.Raw)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ksi.NewCalendarAuthRecord(pd, sd)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := ksi.NewPublicationRecord(ksi.TypePubFileRecord, pd, []string{"Tempel test"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	content, err := ksi.BuildPublicationsFileContent(
		ksi.PublicationsFileHeader{Version: 1, CreationTime: pubTime, RepositoryURI: "http://localhost/ksi-publications.bin"},
		s.CertificateRecords(), []*ksi.PublicationRecord{rec})
	if err != nil {
		t.Fatal(err)
	}
	sig, err := s.SignPublicationsFile(content)
	if err != nil {
		t.Fatal(err)
	}
	file, err := ksi.AppendPublicationsFileSignature(content, sig)
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(parsed.SignedBytes(), content) {
		t.Fatal("signed bytes differ from the content")
	}
	return pubFile{content: content, sig: sig, file: file, parsed: parsed, auth: auth, pubTime: pubTime}
}

func trustFor(t *testing.T, s *Set, constraint string, at time.Time) verifier.Trust {
	t.Helper()
	c, err := verifier.ParseConstraint(constraint)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(s.Root)
	return verifier.Trust{Roots: pool, Constraints: []verifier.Constraint{c}, Time: at}
}

func TestPublicationsFileTrust(t *testing.T) {
	s, _ := sharedSet(t)
	now := time.Now()
	pf := buildPubFile(t, s, now)

	if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, s, s.Constraint(), now)); err != nil {
		t.Fatalf("VerifyPublicationsFile: %v", err)
	}
	// The ksi-tool long form and the dotted OID name the same attribute.
	for _, c := range []string{"email=" + DefaultEmail, "1.2.840.113549.1.9.1=" + DefaultEmail, "CN=Tempel publications", "O=" + DefaultOrganization} {
		if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, s, c, now)); err != nil {
			t.Errorf("constraint %s: %v", c, err)
		}
	}

	// The calendar authentication record checks out against the
	// certificate found in the verified file, as the key-based policy does.
	rec := pf.parsed.CertificateByID(pf.auth.SignatureData.CertificateID)
	if rec == nil {
		t.Fatalf("certificate %X not in the file", pf.auth.SignatureData.CertificateID)
	}
	cert, err := x509.ParseCertificate(rec.DER)
	if err != nil {
		t.Fatal(err)
	}
	if err := cert.CheckSignature(x509.SHA256WithRSA, pf.auth.PublishedData.Raw, pf.auth.SignatureData.Value); err != nil {
		t.Errorf("calendar auth record signature: %v", err)
	}
	if cert.SignatureAlgorithm.String() != "SHA256-RSA" {
		t.Errorf("calendar certificate signed with %v", cert.SignatureAlgorithm)
	}

	other, _ := otherSet(t)
	expired := s.Publisher.NotAfter.Add(time.Hour)
	flipped := bytes.Clone(pf.file)
	flipped[len(ksi.PubFileMagic)+6] ^= 0x01 // inside the header's creation time
	flippedPF, err := ksi.ParsePublicationsFile(flipped)
	if err != nil {
		t.Fatal(err)
	}
	flippedCert := bytes.Clone(pf.file)
	i := bytes.Index(flippedCert, s.Calendar.Raw)
	flippedCert[i+len(s.Calendar.Raw)-1] ^= 0x80 // the calendar certificate's signature
	flippedCertPF, err := ksi.ParsePublicationsFile(flippedCert)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		pf    *ksi.PublicationsFile
		trust verifier.Trust
	}{
		{"wrong constraint", pf.parsed, trustFor(t, s, "E=other@x", now)},
		{"different root", pf.parsed, trustFor(t, other, s.Constraint(), now)},
		{"after the certificates expire", pf.parsed, trustFor(t, s, s.Constraint(), expired)},
		{"before the certificates are valid", pf.parsed, trustFor(t, s, s.Constraint(), s.Publisher.NotBefore.Add(-time.Minute))},
		{"flipped header byte", flippedPF, trustFor(t, s, s.Constraint(), now)},
		{"flipped certificate byte", flippedCertPF, trustFor(t, s, s.Constraint(), now)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := verifier.VerifyPublicationsFile(tc.pf, tc.trust)
			if !errors.Is(err, verifier.ErrUntrustedPublicationsFile) {
				t.Fatalf("VerifyPublicationsFile = %v, want ErrUntrustedPublicationsFile", err)
			}
			t.Log(err)
		})
	}
}

// TestKeyBasedVerification runs the verifier's key-based policy on a
// complete signature whose calendar authentication record this package
// signed, with the calendar certificate from a publications file.
func TestKeyBasedVerification(t *testing.T) {
	s, _ := sharedSet(t)
	now := time.Now()
	sig, doc := keySignedSignature(t, s, now)

	pf := buildPubFile(t, s, now)
	if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, s, s.Constraint(), now)); err != nil {
		t.Fatal(err)
	}
	rep := verifier.Verify(context.Background(), sig, verifier.KeyBased, verifier.Options{Document: doc, PublicationsFile: pf.parsed})
	if err := rep.Err(); err != nil {
		t.Fatalf("key-based verification: %v (rules %+v)", err, rep.Rules)
	}

	// A file from another PKI does not hold the certificate.
	other, _ := otherSet(t)
	rep = verifier.Verify(context.Background(), sig, verifier.KeyBased, verifier.Options{Document: doc, PublicationsFile: buildPubFile(t, other, now).parsed})
	if rep.Result == verifier.OK {
		t.Error("verified against another PKI's publications file")
	}
}

// keySignedSignature returns a complete signature of a document (also
// returned) at now whose calendar authentication record s signed.
func keySignedSignature(t *testing.T, s *Set, now time.Time) (*ksi.Signature, ksi.Imprint) {
	t.Helper()
	aggrTime := uint64(now.Unix())
	doc := mustDigest(t, "document")
	links := []ksi.Link{{Left: true, Sibling: mustDigest(t, "sibling")}}
	var h ksi.Hasher
	out, err := ksi.ChainOutput(&h, ksi.SHA2_256, doc, 0, links)
	if err != nil {
		t.Fatal(err)
	}
	agg, err := ksi.NewAggregationChain(aggrTime, []uint64{ksi.LinksShape(links)}, doc, ksi.SHA2_256, links)
	if err != nil {
		t.Fatal(err)
	}
	var calLinks []ksi.CalendarLink
	for i, left := range calendarSides(aggrTime, aggrTime) {
		calLinks = append(calLinks, ksi.CalendarLink{Left: left, Sibling: mustDigest(t, fmt.Sprint("calendar ", i))})
	}
	cal, err := ksi.NewCalendarChain(aggrTime, aggrTime, out.Hash, calLinks)
	if err != nil {
		t.Fatal(err)
	}
	root, err := cal.Output(&h)
	if err != nil {
		t.Fatal(err)
	}
	pd := ksi.NewPublishedData(aggrTime, root)
	sd, err := s.SignCalendarRoot(pd.Raw)
	if err != nil {
		t.Fatal(err)
	}
	auth, err := ksi.NewCalendarAuthRecord(pd, sd)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ksi.SignatureFromElements([][]byte{agg.Raw, cal.Raw, auth.Raw})
	if err != nil {
		t.Fatal(err)
	}
	// Round trip through bytes, as a client would receive it.
	sig, err = ksi.ParseSignature(sig.Raw)
	if err != nil {
		t.Fatal(err)
	}
	return sig, doc
}

// calendarSides returns the link sides (lowest first, true = left) of leaf
// t in the calendar tree over leaves 0..p (docs/design/formats.md#calendar-hash-chains).
func calendarSides(p, t uint64) []bool {
	var rootFirst []bool
	lo, n := uint64(0), p+1
	for n > 1 {
		k := uint64(1)
		for k < n-k {
			k *= 2
		}
		if t < lo+k {
			rootFirst = append(rootFirst, true)
			n = k
		} else {
			rootFirst = append(rootFirst, false)
			lo += k
			n -= k
		}
	}
	out := make([]bool, len(rootFirst))
	for i, s := range rootFirst {
		out[len(out)-1-i] = s
	}
	return out
}

func TestSignPublicationsFileClock(t *testing.T) {
	// Certificates issued long ago have expired: signing now is refused
	// rather than producing a file no verifier accepts.
	old, _ := initIn(t, InitOptions{Now: time.Now().AddDate(-11, 0, 0)})
	if _, err := old.SignPublicationsFile([]byte(ksi.PubFileMagic + "x")); !errors.Is(err, ErrNotValid) {
		t.Errorf("SignPublicationsFile with expired certificates: %v, want ErrNotValid", err)
	}
	// A clock-injected PKI still signs calendar roots of its own time.
	pd := ksi.NewPublishedData(uint64(time.Now().AddDate(-10, -6, 0).Unix()), mustDigest(t, "old root"))
	if _, err := old.SignCalendarRoot(pd.Raw); err != nil {
		t.Errorf("SignCalendarRoot within the old validity: %v", err)
	}
	s, _ := sharedSet(t)
	if _, err := s.SignPublicationsFile(nil); err == nil {
		t.Error("signed empty content")
	}
}

// testCA issues certificates for operator-style key sets.
type testCA struct {
	cert *x509.Certificate
	key  crypto.Signer
}

func newCert(t *testing.T, tmpl *x509.Certificate, parent *testCA, pub crypto.PublicKey, self crypto.Signer) *x509.Certificate {
	t.Helper()
	serial, err := rand.Int(rand.Reader, big.NewInt(1<<62))
	if err != nil {
		t.Fatal(err)
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1))
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
		tmpl.NotAfter = time.Now().Add(24 * time.Hour)
	}
	p, signer := tmpl, self
	if parent != nil {
		p, signer = parent.cert, parent.key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p, pub, signer)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func rsaKey(t *testing.T, bits int) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// operatorPKI is a root, an intermediate CA, an ECDSA publisher under the
// intermediate, and an RSA calendar signer under the root.
type operatorPKI struct {
	root, inter testCA
	pub         *x509.Certificate
	pubKey      *ecdsa.PrivateKey
	cal         *x509.Certificate
	calKey      *rsa.PrivateKey
	dir         string
	files       Files
}

func newOperatorPKI(t *testing.T, email bool) *operatorPKI {
	t.Helper()
	o := &operatorPKI{dir: t.TempDir()}
	rk := rsaKey(t, 2048)
	o.root = testCA{newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Operator root"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, nil, rk.Public(), rk), rk}
	ik, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	o.inter = testCA{newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Operator intermediate"}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign}, &o.root, ik.Public(), nil), ik}
	o.pubKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	subj := pkix.Name{CommonName: "Operator publications", Organization: []string{"Operator"}}
	if email {
		subj.ExtraNames = []pkix.AttributeTypeAndValue{{Type: oidEmailAddress, Value: "pub@operator.example"}}
	}
	o.pub = newCert(t, &x509.Certificate{Subject: subj, KeyUsage: x509.KeyUsageDigitalSignature}, &o.inter, o.pubKey.Public(), nil)
	o.calKey = rsaKey(t, 2048)
	o.cal = newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "Operator calendar"}, KeyUsage: x509.KeyUsageDigitalSignature,
		SignatureAlgorithm: x509.SHA256WithRSA}, &o.root, o.calKey.Public(), nil)

	o.files = Files{
		RootCert:      filepath.Join(o.dir, "ca.crt"),
		PublisherCert: filepath.Join(o.dir, "pub.crt"),
		PublisherKey:  filepath.Join(o.dir, "pub.key"),
		CalendarCert:  filepath.Join(o.dir, "cal.crt"),
		CalendarKey:   filepath.Join(o.dir, "cal.key"),
		Intermediates: []string{filepath.Join(o.dir, "inter.crt")},
	}
	writeCert(t, o.files.RootCert, o.root.cert)
	writeCert(t, o.files.PublisherCert, o.pub)
	writeCert(t, o.files.Intermediates[0], o.inter.cert)
	writeCert(t, o.files.CalendarCert, o.cal)
	der, err := x509.MarshalECPrivateKey(o.pubKey) // SEC 1, as openssl ecparam writes
	if err != nil {
		t.Fatal(err)
	}
	writeKey(t, o.files.PublisherKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}))
	writeKey(t, o.files.CalendarKey, pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(o.calKey)}))
	return o
}

func TestLoadFilesOperatorChain(t *testing.T) {
	o := newOperatorPKI(t, true)
	s, err := LoadFiles(o.files)
	if err != nil {
		t.Fatalf("LoadFiles: %v", err)
	}
	if len(s.Intermediates) != 1 || !s.Intermediates[0].Equal(o.inter.cert) || s.RootPath != o.files.RootCert {
		t.Fatalf("intermediates %d, root path %q", len(s.Intermediates), s.RootPath)
	}
	if s.Constraint() != "E=pub@operator.example" {
		t.Errorf("Constraint = %q", s.Constraint())
	}
	now := time.Now()
	pf := buildPubFile(t, s, now)
	// The verifier only knows the root: the intermediate travels in the
	// PKCS#7 signature.
	if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, s, s.Constraint(), now)); err != nil {
		t.Fatalf("VerifyPublicationsFile: %v", err)
	}
	openSSLVerify(t, pf, o.files.RootCert)

	// The chain may instead follow the leaf in the publisher file, with a
	// copy of the root that is dropped.
	files := o.files
	files.Intermediates = nil
	files.PublisherCert = filepath.Join(o.dir, "pub-chain.crt")
	writeCert(t, files.PublisherCert, o.pub, o.root.cert, o.inter.cert)
	s2, err := LoadFiles(files)
	if err != nil {
		t.Fatalf("LoadFiles with a chain file: %v", err)
	}
	if len(s2.Intermediates) != 1 || !s2.Intermediates[0].Equal(o.inter.cert) {
		t.Errorf("intermediates from the chain file: %d", len(s2.Intermediates))
	}

	// Without the intermediate the publisher does not chain to the root.
	files = o.files
	files.Intermediates = nil
	if _, err := LoadFiles(files); err == nil || !strings.Contains(err.Error(), "does not chain") {
		t.Errorf("LoadFiles without the intermediate: %v", err)
	}
}

func TestLoadFilesConstraintFallsBackToCN(t *testing.T) {
	o := newOperatorPKI(t, false)
	s, err := LoadFiles(o.files)
	if err != nil {
		t.Fatal(err)
	}
	if s.Constraint() != "CN=Operator publications" {
		t.Errorf("Constraint = %q", s.Constraint())
	}
	now := time.Now()
	pf := buildPubFile(t, s, now)
	if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, s, s.Constraint(), now)); err != nil {
		t.Errorf("VerifyPublicationsFile with the CN constraint: %v", err)
	}
}

func TestLoadFilesRejectsUnsuitableCalendarSigner(t *testing.T) {
	o := newOperatorPKI(t, true)
	ek, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	small := rsaKey(t, 1024)
	ecCA := testCA{o.inter.cert, o.inter.key}
	for _, tc := range []struct {
		name string
		cert *x509.Certificate
		key  crypto.PrivateKey
		want string
	}{
		{"ECDSA key", newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ec"}}, &o.root, ek.Public(), nil), ek, "must be RSA"},
		{"RSA-1024", newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "small"}}, &o.root, small.Public(), nil), small, "RSA-1024"},
		{"signed with ECDSA", newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ecdsa-signed"}}, &ecCA, o.calKey.Public(), nil), o.calKey, "must be signed with SHA256-RSA"},
		{"signed with SHA-384", newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "sha384"}, SignatureAlgorithm: x509.SHA384WithRSA}, &o.root, o.calKey.Public(), nil), o.calKey, "must be signed with SHA256-RSA"},
		{"no digitalSignature", newCert(t, &x509.Certificate{Subject: pkix.Name{CommonName: "ku"}, KeyUsage: x509.KeyUsageKeyEncipherment}, &o.root, o.calKey.Public(), nil), o.calKey, "digitalSignature"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			files := o.files
			files.CalendarCert = filepath.Join(t.TempDir(), "cal.crt")
			files.CalendarKey = filepath.Join(t.TempDir(), "cal.key")
			writeCert(t, files.CalendarCert, tc.cert)
			writePKCS8(t, files.CalendarKey, tc.key)
			if _, err := LoadFiles(files); err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("LoadFiles error = %v, want %q", err, tc.want)
			}
		})
	}
}

func TestOpenSSLCrossCheck(t *testing.T) {
	s, dir := sharedSet(t)
	pf := buildPubFile(t, s, time.Now())
	openSSLVerify(t, pf, filepath.Join(dir, RootCertFile))

	// The fingerprint matches openssl's.
	out, err := exec.Command("openssl", "x509", "-noout", "-fingerprint", "-sha256", "-in", filepath.Join(dir, RootCertFile)).CombinedOutput()
	if err != nil {
		t.Fatalf("openssl x509: %v\n%s", err, out)
	}
	if _, fp, _ := strings.Cut(strings.TrimSpace(string(out)), "="); fp != s.RootFingerprint() {
		t.Errorf("openssl fingerprint %q, RootFingerprint %q", fp, s.RootFingerprint())
	}

	// The calendar authentication record verifies with openssl dgst over
	// the published-data TLV (docs/design/formats.md#calendar-authentication-records).
	tmp := t.TempDir()
	pubKeyDER, err := x509.MarshalPKIXPublicKey(s.Calendar.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{
		"pd.bin":  pf.auth.PublishedData.Raw,
		"sig.bin": pf.auth.SignatureData.Value,
		"cal.pub": pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubKeyDER}),
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command("openssl", "dgst", "-sha256", "-verify", "cal.pub", "-signature", "sig.bin", "pd.bin")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("openssl dgst -verify: %v\n%s", err, out)
	}
}

// openSSLVerify checks the detached signature with openssl cms, both with
// -purpose any and with openssl's default (S/MIME signing) purpose.
func openSSLVerify(t *testing.T, pf pubFile, rootPEM string) {
	t.Helper()
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl not on PATH")
	}
	tmp := t.TempDir()
	sig, content := filepath.Join(tmp, "sig.der"), filepath.Join(tmp, "content.bin")
	if err := os.WriteFile(sig, pf.sig, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(content, pf.content, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, extra := range [][]string{{"-purpose", "any"}, nil} {
		args := append([]string{"cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", content, "-CAfile", rootPEM, "-out", os.DevNull}, extra...)
		if out, err := exec.Command("openssl", args...).CombinedOutput(); err != nil {
			t.Errorf("openssl %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	// A changed byte of content fails.
	bad := bytes.Clone(pf.content)
	bad[len(bad)-1] ^= 1
	if err := os.WriteFile(content, bad, 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER", "-in", sig, "-content", content, "-CAfile", rootPEM, "-purpose", "any", "-out", os.DevNull).CombinedOutput(); err == nil {
		t.Errorf("openssl accepted changed content\n%s", out)
	}
}
