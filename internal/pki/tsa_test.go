package pki

import (
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// tsaVerifies checks the set's TSA certificate as OpenSSL and RFC 3161
// want it: chained to the root for timeStamping, the EKU critical.
func tsaVerifies(t *testing.T, s *Set) {
	t.Helper()
	if s.TSA == nil {
		t.Fatalf("no TSA: %s", s.TSAMissing)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.Root)
	if _, err := s.TSA.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageTimeStamping}}); err != nil {
		t.Fatalf("TSA certificate does not chain for timeStamping: %v", err)
	}
	critical := false
	for _, e := range s.TSA.Extensions {
		if e.Id.Equal(oidExtKeyUsage) {
			critical = e.Critical
		}
	}
	if !critical {
		t.Fatal("TSA extended key usage is not critical")
	}
	if _, err := s.TSASigner(); err != nil {
		t.Fatal(err)
	}
}

func TestInitTSAKeyTypes(t *testing.T) {
	for _, tt := range []struct {
		kind TSAKeyType
		want string
	}{{"", "rsa"}, {TSAKeyECDSA, "ecdsa"}} {
		dir := t.TempDir()
		s, err := Init(dir, InitOptions{TSAKey: tt.kind})
		if err != nil {
			t.Fatal(err)
		}
		tsaVerifies(t, s)
		loaded, err := Load(dir)
		if err != nil {
			t.Fatal(err)
		}
		tsaVerifies(t, loaded)
		switch k := loaded.TSAKey.Public().(type) {
		case *rsa.PublicKey:
			if tt.want != "rsa" || k.N.BitLen() != TSAKeyBits {
				t.Errorf("%q: RSA-%d key", tt.kind, k.N.BitLen())
			}
		case *ecdsa.PublicKey:
			if tt.want != "ecdsa" || k.Curve.Params().Name != "P-256" {
				t.Errorf("%q: ECDSA %s key", tt.kind, k.Curve.Params().Name)
			}
		}
		if m := mode(t, filepath.Join(dir, TSAKeyFile)); m != KeyMode {
			t.Errorf("tsa.key mode %04o", m)
		}
	}
	if _, err := Init(t.TempDir(), InitOptions{TSAKey: "dsa"}); err == nil || !strings.Contains(err.Error(), "dsa") {
		t.Errorf("unknown TSA key type: %v", err)
	}
}

// A key directory made before the TSA existed: LoadOrInit issues its TSA
// when the root key is there; without it the set has none and says why.
func TestOldDirGetsTSA(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, InitOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{TSACertFile, TSAKeyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if s.TSA != nil || !strings.Contains(s.TSAMissing, TSACertFile) {
		t.Fatalf("Load without tsa.pem: TSA %v, missing %q", s.TSA, s.TSAMissing)
	}
	if _, err := s.TSASigner(); err == nil || !strings.Contains(err.Error(), TSACertFile) {
		t.Fatalf("TSASigner without a TSA: %v", err)
	}
	s, created, err := LoadOrInit(dir, InitOptions{})
	if err != nil || created {
		t.Fatalf("LoadOrInit: %v, created %v", err, created)
	}
	tsaVerifies(t, s)

	// Root key offline: nothing is issued.
	for _, f := range []string{TSACertFile, TSAKeyFile, RootKeyFile} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	s, _, err = LoadOrInit(dir, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if s.TSA != nil || s.TSAMissing == "" {
		t.Fatalf("root key offline: TSA %v, missing %q", s.TSA, s.TSAMissing)
	}
	if present(filepath.Join(dir, TSACertFile)) {
		t.Fatal("a TSA certificate was issued without the root key")
	}
	if err := IssueTSA(dir, InitOptions{}); err == nil || !strings.Contains(err.Error(), RootKeyFile) {
		t.Fatalf("IssueTSA without the root key: %v", err)
	}
}

func TestLoadFilesTSA(t *testing.T) {
	dir := t.TempDir()
	if _, err := Init(dir, InitOptions{TSAKey: TSAKeyECDSA}); err != nil {
		t.Fatal(err)
	}
	f := DirFiles(dir)
	f.TSACert, f.TSAKey = filepath.Join(dir, TSACertFile), filepath.Join(dir, TSAKeyFile)
	s, err := LoadFiles(f)
	if err != nil {
		t.Fatal(err)
	}
	tsaVerifies(t, s)
	// The calendar certificate is no TSA certificate: refused.
	f.TSACert, f.TSAKey = filepath.Join(dir, CalendarCertFile), filepath.Join(dir, CalendarKeyFile)
	if _, err := LoadFiles(f); err == nil || !strings.Contains(err.Error(), "extended key usage") {
		t.Fatalf("calendar certificate as TSA: %v", err)
	}
	// A key of another certificate: refused.
	f.TSACert, f.TSAKey = filepath.Join(dir, TSACertFile), filepath.Join(dir, CalendarKeyFile)
	if _, err := LoadFiles(f); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("mismatched TSA key: %v", err)
	}
	// Only one of the two: refused.
	f.TSACert, f.TSAKey = filepath.Join(dir, TSACertFile), ""
	if _, err := LoadFiles(f); err == nil {
		t.Fatal("TSA certificate without key accepted")
	}
}

func TestInitMembersTSA(t *testing.T) {
	sets, err := InitMembers(t.TempDir(), 2, InitOptions{Now: time.Now()})
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range sets {
		tsaVerifies(t, s)
	}
	if sets[0].TSA.Equal(sets[1].TSA) || sets[0].TSAKey.Public().(*rsa.PublicKey).Equal(sets[1].TSAKey.Public()) {
		t.Fatal("members share a TSA key")
	}
}
