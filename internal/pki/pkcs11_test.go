//go:build cgo

package pki

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/hsm"
	"github.com/tempel-ksi/tempel/internal/hsm/softhsmtest"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

const tokenLabel = "pkitest"

// tokenSet makes a development root in a directory, calendar, publisher
// and TSA keys in a fresh SoftHSM2 token, certifies them with the root
// and loads the set the way tempel serve does, with the keys as URIs.
func tokenSet(t testing.TB) (*Set, string) {
	t.Helper()
	softhsmtest.New(t, tokenLabel)
	dir := filepath.Join(t.TempDir(), "keys")
	if _, err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	keys := hsm.New(hsm.Config{Module: softhsmtest.Module, PIN: softhsmtest.PIN})
	t.Cleanup(func() { keys.Close() })
	uri := func(name string) string { return "pkcs11:token=" + tokenLabel + ";object=" + name }
	var tk TokenKeys
	for _, k := range []struct {
		name string
		dst  *crypto.Signer
	}{{"calendar", &tk.Calendar}, {"publisher", &tk.Publisher}, {"tsa", &tk.TSA}} {
		s, err := keys.Generate(uri(k.name), CalendarKeyBits)
		if err != nil {
			t.Fatal(err)
		}
		*k.dst = s
	}
	iss, err := IssueForKeys(dir, InitOptions{}, tk)
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	write := func(name string, c *x509.Certificate) string {
		p := filepath.Join(out, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw}), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	s, err := LoadFiles(Files{
		RootCert:      filepath.Join(dir, RootCertFile),
		PublisherCert: write("publisher.pem", iss.Publisher), PublisherKey: uri("publisher"),
		CalendarCert: write("calendar.pem", iss.Calendar), CalendarKey: uri("calendar"),
		TSACert: write("tsa.pem", iss.TSA), TSAKey: uri("tsa"),
		OpenKey: keys.Open,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s, dir
}

func TestTokenKeysSign(t *testing.T) {
	s, _ := tokenSet(t)
	if _, ok := s.CalendarKey.(*hsm.Key); !ok {
		t.Fatalf("calendar key is %T, want a key in the token", s.CalendarKey)
	}
	now := time.Now()
	// The calendar authentication record (signed in the token) checks
	// against the certificate in the file the token's publisher key
	// signed, and the file against the root: what the key-based policy does.
	pf := buildPubFile(t, s, now)
	if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, s, s.Constraint(), now)); err != nil {
		t.Fatalf("VerifyPublicationsFile: %v", err)
	}
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
	if _, err := s.TSASigner(); err != nil {
		t.Errorf("TSASigner: %v", err)
	}
	for _, k := range []struct {
		name string
		key  any
	}{{"calendar", s.CalendarKey}, {"publisher", s.PublisherKey}, {"tsa", s.TSAKey}} {
		p, err := hsm.KeyProtection(k.key.(*hsm.Key))
		if err != nil {
			t.Fatal(err)
		}
		if p.Extractable || !p.Sensitive || !p.ExportRefused {
			t.Errorf("%s key: %+v, want sensitive, not extractable, export refused", k.name, p)
		}
	}
}

func TestIssueForKeysWithoutRootKey(t *testing.T) {
	s, dir := tokenSet(t)
	if err := os.Remove(filepath.Join(dir, RootKeyFile)); err != nil {
		t.Fatal(err)
	}
	tk := TokenKeys{Calendar: s.CalendarKey, Publisher: s.PublisherKey, TSA: s.TSAKey}
	if _, err := IssueForKeys(dir, InitOptions{}, tk); !errors.Is(err, ErrNoRootKey) {
		t.Fatalf("IssueForKeys without root.key: %v, want ErrNoRootKey", err)
	}
	reqs, err := CertificateRequests(InitOptions{}, tk)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"calendar", "publisher", "tsa"} {
		b, _ := pem.Decode(reqs[name])
		if b == nil {
			t.Fatalf("%s request is not PEM", name)
		}
		csr, err := x509.ParseCertificateRequest(b.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		if err := csr.CheckSignature(); err != nil {
			t.Errorf("%s request: %v", name, err)
		}
		if name == "publisher" {
			if e := subjectEmail(&x509.Certificate{Subject: csr.Subject}); e != DefaultEmail {
				t.Errorf("publisher request's e-mail address %q, want %q", e, DefaultEmail)
			}
		}
	}
}

// BenchmarkSignCalendarRoot signs calendar roots with the development
// PEM key and with the same kind of key (RSA-2048) in SoftHSM2, in one
// run so that the ratio compares like with like.
func BenchmarkSignCalendarRoot(b *testing.B) {
	pemSet, err := Init(b.TempDir(), InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	tokSet, _ := tokenSet(b)
	root, err := ksi.SHA2_256.Digest([]byte("calendar root"))
	if err != nil {
		b.Fatal(err)
	}
	pd := ksi.NewPublishedData(uint64(time.Now().Unix()), root)
	for _, bc := range []struct {
		name string
		s    *Set
	}{{"pem", pemSet}, {"softhsm2", tokSet}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				if _, err := bc.s.SignCalendarRoot(pd.Raw); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
