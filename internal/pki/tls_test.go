package pki

import (
	"crypto/x509"
	"errors"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// TestDevTLSCertificate: the development TLS certificate is issued by the
// root, valid for the loopback names, usable for a TLS server only, and
// its key is written 0600.
func TestDevTLSCertificate(t *testing.T) {
	s, shared := sharedSet(t)
	dir := copyDir(t, shared)
	cert, key, issued, err := EnsureDevTLS(dir)
	if err != nil || !issued {
		t.Fatalf("EnsureDevTLS: issued %v, %v", issued, err)
	}
	if runtime.GOOS != "windows" {
		if m := mode(t, key); m != KeyMode {
			t.Errorf("%s mode %04o, want %04o", key, m, KeyMode)
		}
	}
	pair, err := LoadTLSKeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(s.Root)
	for _, host := range DevTLSHosts {
		if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: host, Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("certificate for %s: %v", host, err)
		}
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: "example.org", Roots: roots}); err == nil {
		t.Error("certificate valid for example.org")
	}
	if _, err := pair.Leaf.Verify(x509.VerifyOptions{DNSName: "localhost", Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("certificate usable as a client certificate")
	}
	// A second call uses the files as they are.
	if _, _, issued, err := EnsureDevTLS(dir); err != nil || issued {
		t.Fatalf("second EnsureDevTLS: issued %v, %v", issued, err)
	}
	if err := IssueDevTLS(dir, DevTLSHosts, time.Time{}); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("IssueDevTLS over existing files: %v", err)
	}
	// The development PKI still loads as before.
	if _, err := Load(dir); err != nil {
		t.Fatal(err)
	}
}

func TestDevTLSNeedsRootKey(t *testing.T) {
	_, shared := sharedSet(t)
	dir := copyDir(t, shared)
	if err := os.Remove(filepath.Join(dir, RootKeyFile)); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := EnsureDevTLS(dir)
	if err == nil || !strings.Contains(err.Error(), "root.key is not there") || !strings.Contains(err.Error(), "--tls-cert") {
		t.Fatalf("EnsureDevTLS without root.key: %v", err)
	}
	for _, name := range []string{TLSCertFile, TLSKeyFile} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			t.Errorf("%s written without a root key", name)
		}
	}
	// Issued while the root key was there, the certificate is used after
	// root.key has been moved offline.
	dir2 := copyDir(t, shared)
	if _, _, _, err := EnsureDevTLS(dir2); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(dir2, RootKeyFile), filepath.Join(t.TempDir(), RootKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, _, issued, err := EnsureDevTLS(dir2); err != nil || issued {
		t.Fatalf("EnsureDevTLS with the root key offline: issued %v, %v", issued, err)
	}
	// Half a pair is not completed.
	os.Remove(filepath.Join(dir2, TLSKeyFile))
	if _, _, _, err := EnsureDevTLS(dir2); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Fatalf("EnsureDevTLS with tls.pem alone: %v", err)
	}
}

// TestInitWithTLSHosts: Init issues the TLS certificate with the rest, and
// Force replaces it with one from the new root.
func TestInitWithTLSHosts(t *testing.T) {
	s1, dir := initIn(t, InitOptions{TLSHosts: []string{"tempel.test", "10.0.0.1"}})
	pair, err := LoadTLSKeyPair(filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.CheckSignatureFrom(s1.Root); err != nil {
		t.Fatal(err)
	}
	if len(pair.Leaf.DNSNames) != 1 || pair.Leaf.DNSNames[0] != "tempel.test" || len(pair.Leaf.IPAddresses) != 1 || !pair.Leaf.IPAddresses[0].Equal(net.ParseIP("10.0.0.1")) {
		t.Fatalf("names %v %v", pair.Leaf.DNSNames, pair.Leaf.IPAddresses)
	}
	if _, err := Init(dir, InitOptions{TLSHosts: DevTLSHosts}); err == nil {
		t.Fatal("second Init succeeded")
	}
	s2, err := Init(dir, InitOptions{TLSHosts: DevTLSHosts, Force: true})
	if err != nil {
		t.Fatal(err)
	}
	pair, err = LoadTLSKeyPair(filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := pair.Leaf.CheckSignatureFrom(s2.Root); err != nil {
		t.Fatalf("TLS certificate after Force is not from the new root: %v", err)
	}
}

func TestLoadTLSKeyPairErrors(t *testing.T) {
	_, shared := sharedSet(t)
	dir := copyDir(t, shared)
	if _, _, _, err := EnsureDevTLS(dir); err != nil {
		t.Fatal(err)
	}
	cert, key := filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile)
	if runtime.GOOS != "windows" {
		if err := os.Chmod(key, 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := LoadTLSKeyPair(cert, key); !errors.Is(err, ErrKeyPermissions) {
			t.Fatalf("0644 key: %v", err)
		}
		os.Chmod(key, KeyMode)
	}
	if _, err := LoadTLSKeyPair(cert, filepath.Join(dir, CalendarKeyFile)); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("mismatched key: %v", err)
	}
	if _, err := LoadTLSKeyPair(filepath.Join(dir, "none.pem"), key); err == nil || !strings.Contains(err.Error(), "none.pem") {
		t.Fatalf("missing certificate: %v", err)
	}
	if _, err := LoadCertPool(key); err == nil {
		t.Fatal("a key file read as CA certificates")
	}
}
