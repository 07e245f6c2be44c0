package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

// Files of the RFC 3161 time-stamping authority in a key directory.
const (
	TSACertFile = "tsa.pem"
	TSAKeyFile  = "tsa.key"
)

// TSAKeyType selects the key of a development TSA certificate.
type TSAKeyType string

// The TSA key types [Init] can make.
const (
	TSAKeyRSA   TSAKeyType = "rsa"   // RSA-2048, the default: every client accepts it
	TSAKeyECDSA TSAKeyType = "ecdsa" // ECDSA P-256: about 20 times cheaper to sign with
)

// TSAKeyBits is the size of a development RSA TSA key.
const TSAKeyBits = 2048

var (
	oidExtKeyUsage    = asn1.ObjectIdentifier{2, 5, 29, 37}
	oidKPTimeStamping = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 3, 8}
)

func newTSAKey(kind TSAKeyType) (crypto.Signer, error) {
	switch kind {
	case "", TSAKeyRSA:
		return rsa.GenerateKey(rand.Reader, TSAKeyBits)
	case TSAKeyECDSA:
		return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	}
	return nil, fmt.Errorf("pki: TSA key type %q; want %q or %q", kind, TSAKeyRSA, TSAKeyECDSA)
}

// issueTSA issues a TSA certificate with common name cn: extended key
// usage timeStamping only and critical, which RFC 3161 §2.3 requires and
// OpenSSL enforces. Go writes that extension non-critical, so it is given
// as an extra extension.
func issueTSA(root *x509.Certificate, rootKey crypto.Signer, cn string, opts InitOptions) (*x509.Certificate, crypto.Signer, error) {
	key, err := newTSAKey(opts.TSAKey)
	if err != nil {
		return nil, nil, err
	}
	tmpl, err := tsaTemplate(opts, cn)
	if err != nil {
		return nil, nil, err
	}
	notBefore := opts.Now.Add(-ClockSkew).UTC().Truncate(time.Second)
	tmpl.NotBefore, tmpl.NotAfter = notBefore, notBefore.Add(LeafValidity)
	cert, err := issue(tmpl, root, key.Public(), rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: TSA certificate: %w", err)
	}
	return cert, key, nil
}

// tsaFiles issues a TSA certificate and returns its files to write.
func tsaFiles(root *x509.Certificate, rootKey crypto.Signer, cn string, opts InitOptions) ([]outFile, *x509.Certificate, crypto.Signer, error) {
	cert, key, err := issueTSA(root, rootKey, cn, opts)
	if err != nil {
		return nil, nil, nil, err
	}
	files, err := pemPair(TSACertFile, cert, TSAKeyFile, key)
	return files, cert, key, err
}

// IssueTSA issues the development TSA certificate and key of the key
// directory dir (tsa.pem, tsa.key) with its root key, for a directory made
// before the TSA existed. It refuses to overwrite either file, and fails
// when root.key is not in dir (kept offline).
func IssueTSA(dir string, opts InitOptions) error {
	opts, err := initDefaults(opts)
	if err != nil {
		return err
	}
	certPath, keyPath := filepath.Join(dir, TSACertFile), filepath.Join(dir, TSAKeyFile)
	for _, p := range []string{certPath, keyPath} {
		if present(p) {
			return fmt.Errorf("pki: issue TSA certificate: %s exists; refusing to overwrite it", p)
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
	if !present(rootKeyPath) {
		return fmt.Errorf("pki: %s is not there (kept offline?), so no TSA certificate can be issued here; issue one where the root key is", rootKeyPath)
	}
	rootKey, err := readKeyFile(rootKeyPath)
	if err != nil {
		return err
	}
	if !publicKeysEqual(roots[0].PublicKey, rootKey.Public()) {
		return fmt.Errorf("pki: %s does not belong to %s", rootKeyPath, filepath.Join(dir, RootCertFile))
	}
	files, _, _, err := tsaFiles(roots[0], rootKey, "Tempel TSA", opts)
	if err != nil {
		return err
	}
	defer clearFiles(files)
	// The key first (files[1]): a certificate without its key would block a retry.
	for _, f := range []outFile{files[1], files[0]} {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			os.Remove(keyPath)
			return fmt.Errorf("pki: issue TSA certificate: %w", err)
		}
	}
	syncDir(dir)
	return nil
}

// UseTSA makes the TSA certificate (followed by its issuers, if any) and
// key in these PEM files the set's TSA, in place of any other: the
// operator's TSA beside a development PKI or the operator's other keys.
// The certificate must chain to the set's root and be fit for a TSA.
func (s *Set) UseTSA(certPath, keyPath string) error { return s.loadTSA(certPath, keyPath) }

// loadTSA reads a TSA certificate file (the certificate, optionally
// followed by its issuers) and key into s, checking that the key matches,
// that the certificate is fit for a TSA, and that it chains to the root.
func (s *Set) loadTSA(certPath, keyPath string) error {
	certs, err := readCertFile(certPath)
	if err != nil {
		return err
	}
	key, err := readKeyFile(keyPath)
	if err != nil {
		return err
	}
	return s.setTSA(certs[0], key, append(certs[1:], s.Intermediates...), certPath)
}

func (s *Set) setTSA(cert *x509.Certificate, key crypto.Signer, pool []*x509.Certificate, source string) error {
	if !publicKeysEqual(cert.PublicKey, key.Public()) {
		return fmt.Errorf("pki: TSA key does not belong to the TSA certificate %q (%s)", cert.Subject, source)
	}
	if err := tsp.CheckTSACert(cert); err != nil {
		return fmt.Errorf("pki: %s: %w", source, err)
	}
	chain, err := orderChain(cert, pool, s.Root, "TSA")
	if err != nil {
		return err
	}
	s.TSA, s.TSAKey, s.TSAChain, s.TSAMissing = cert, key, chain, ""
	return nil
}

// TSASigner returns the RFC 3161 signer of the set's TSA key with the
// given policies (the first is the default; none means
// [tsp.DefaultPolicy]), or an error saying why the set has no TSA key.
func (s *Set) TSASigner(policies ...asn1.ObjectIdentifier) (*tsp.Signer, error) {
	if s.TSA == nil {
		why := s.TSAMissing
		if why == "" {
			why = "no TSA certificate and key were configured"
		}
		return nil, errors.New("pki: no TSA key: " + why)
	}
	sg := &tsp.Signer{Key: s.TSAKey, Cert: s.TSA, Chain: s.TSAChain}
	if len(policies) > 0 {
		sg.Policy, sg.Policies = policies[0], policies[1:]
	}
	return sg, nil
}

// loadDirTSA loads the TSA of a key directory when tsa.pem is there and
// otherwise records why the set has none.
func (s *Set) loadDirTSA(dir string) error {
	certPath, keyPath := filepath.Join(dir, TSACertFile), filepath.Join(dir, TSAKeyFile)
	if _, err := os.Lstat(certPath); errors.Is(err, fs.ErrNotExist) {
		s.TSAMissing = fmt.Sprintf("%s is not there; `tempel keys init` makes one, or a server start does when %s is in %s", certPath, RootKeyFile, dir)
		return nil
	}
	return s.loadTSA(certPath, keyPath)
}
