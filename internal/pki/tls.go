package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"time"
)

// File names of the development TLS server certificate inside a key
// directory.
const (
	TLSCertFile = "tls.pem"
	TLSKeyFile  = "tls.key"
)

// DevTLSHosts are the names the development TLS certificate is valid for:
// the loopback addresses a development server listens on by default.
var DevTLSHosts = []string{"localhost", "127.0.0.1", "::1"}

// IssueDevTLS issues a TLS server certificate for hosts (DNS names or IP
// addresses) from the development root in dir (root.pem and root.key) and
// writes it as tls.pem and tls.key (ECDSA P-256, mode 0600). It fails if
// either file exists, and when root.key is absent (moved offline): a
// certificate can only be issued where the root key is.
func IssueDevTLS(dir string, hosts []string, now time.Time) error {
	if len(hosts) == 0 {
		return errors.New("pki: issue TLS certificate: no host names")
	}
	if now.IsZero() {
		now = time.Now()
	}
	certPath, keyPath := filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if _, err := os.Lstat(p); err == nil {
			return fmt.Errorf("pki: issue TLS certificate: %s exists; refusing to overwrite it", p)
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("pki: issue TLS certificate: %w", err)
		}
	}
	roots, err := readCertFile(filepath.Join(dir, RootCertFile))
	if err != nil {
		return err
	}
	if len(roots) != 1 {
		return fmt.Errorf("pki: %s holds %d certificates, want exactly one root", filepath.Join(dir, RootCertFile), len(roots))
	}
	rootKeyPath := filepath.Join(dir, RootKeyFile)
	if _, err := os.Lstat(rootKeyPath); errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("pki: %s is not there (kept offline?), so no TLS certificate can be issued here; issue one where the root key is, or give --tls-cert and --tls-key", rootKeyPath)
	}
	rootKey, err := readKeyFile(rootKeyPath)
	if err != nil {
		return err
	}
	if !publicKeysEqual(roots[0].PublicKey, rootKey.Public()) {
		return fmt.Errorf("pki: %s does not belong to %s", rootKeyPath, filepath.Join(dir, RootCertFile))
	}
	certPEM, keyPEM, err := issueTLS(roots[0], rootKey, hosts, now)
	if err != nil {
		return err
	}
	defer clear(keyPEM)
	// The key first: a certificate without its key would block a retry.
	if err := writeFileAtomic(keyPath, keyPEM, KeyMode); err != nil {
		return fmt.Errorf("pki: issue TLS certificate: %w", err)
	}
	if err := writeFileAtomic(certPath, certPEM, CertMode); err != nil {
		os.Remove(keyPath)
		return fmt.Errorf("pki: issue TLS certificate: %w", err)
	}
	syncDir(dir)
	return nil
}

// issueTLS issues a TLS server certificate for hosts from root and
// returns it and its new ECDSA P-256 key (PKCS#8) in PEM form.
func issueTLS(root *x509.Certificate, rootKey crypto.Signer, hosts []string, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: issue TLS certificate: %w", err)
	}
	notBefore := now.Add(-ClockSkew).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0], Organization: root.Subject.Organization},
		NotBefore:   notBefore,
		NotAfter:    notBefore.Add(LeafValidity),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	cert, err := issue(tmpl, root, key.Public(), rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: issue TLS certificate: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: issue TLS certificate: %w", err)
	}
	defer clear(der)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// EnsureDevTLS returns the development TLS certificate files of dir,
// issuing them for [DevTLSHosts] first when they are absent (which needs
// root.key). issued reports whether it did.
func EnsureDevTLS(dir string) (certFile, keyFile string, issued bool, err error) {
	certFile, keyFile = filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile)
	_, cerr := os.Lstat(certFile)
	_, kerr := os.Lstat(keyFile)
	switch {
	case cerr == nil && kerr == nil:
		return certFile, keyFile, false, nil
	case errors.Is(cerr, fs.ErrNotExist) && errors.Is(kerr, fs.ErrNotExist):
		if err := IssueDevTLS(dir, DevTLSHosts, time.Time{}); err != nil {
			return "", "", false, err
		}
		return certFile, keyFile, true, nil
	case cerr != nil && !errors.Is(cerr, fs.ErrNotExist):
		return "", "", false, fmt.Errorf("pki: %w", cerr)
	case kerr != nil && !errors.Is(kerr, fs.ErrNotExist):
		return "", "", false, fmt.Errorf("pki: %w", kerr)
	}
	return "", "", false, fmt.Errorf("pki: %s holds only one of %s and %s; remove it to issue both again", dir, TLSCertFile, TLSKeyFile)
}

// LoadTLSKeyPair reads a TLS certificate chain (PEM, leaf first) and its
// private key. The key file must not be accessible by group or others,
// as for every other key; errors name the files, never key material.
func LoadTLSKeyPair(certFile, keyFile string) (tls.Certificate, error) {
	chain, err := readCertFile(certFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	key, err := readKeyFile(keyFile)
	if err != nil {
		return tls.Certificate{}, err
	}
	if !publicKeysEqual(chain[0].PublicKey, key.Public()) {
		return tls.Certificate{}, fmt.Errorf("pki: %s does not belong to the first certificate of %s (%q)", keyFile, certFile, chain[0].Subject)
	}
	c := tls.Certificate{PrivateKey: key, Leaf: chain[0]}
	for _, x := range chain {
		c.Certificate = append(c.Certificate, x.Raw)
	}
	return c, nil
}

// LoadCertPool reads CA certificates (PEM or DER, any number per file)
// into a pool, for --tls-ca and --tls-client-ca.
func LoadCertPool(files ...string) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	for _, f := range files {
		cs, err := readCertFile(f)
		if err != nil {
			return nil, err
		}
		for _, c := range cs {
			pool.AddCert(c)
		}
	}
	return pool, nil
}
