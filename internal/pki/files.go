package pki

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/big"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/tempel-ksi/tempel/verifier"
)

// File names inside a key directory.
const (
	RootCertFile      = "root.pem"
	RootKeyFile       = "root.key"
	PublisherCertFile = "publisher.pem"
	PublisherKeyFile  = "publisher.key"
	CalendarCertFile  = "calendar.pem"
	CalendarKeyFile   = "calendar.key"
)

// File modes of a key directory.
const (
	DirMode  fs.FileMode = 0o700
	KeyMode  fs.FileMode = 0o600
	CertMode fs.FileMode = 0o644
)

// Defaults of [InitOptions].
const (
	DefaultEmail        = "publications@tempel.test"
	DefaultOrganization = "Tempel development"
)

// Key sizes and lifetimes of the development PKI made by [Init].
const (
	RootKeyBits      = 3072
	PublisherKeyBits = 2048
	CalendarKeyBits  = 2048
	RootValidity     = 20 * 365 * 24 * time.Hour
	LeafValidity     = 10 * 365 * 24 * time.Hour
	ClockSkew        = time.Hour // NotBefore is this far before Now
)

// ErrKeyPermissions is returned (wrapped) for a key file that group or
// others may access.
var ErrKeyPermissions = errors.New("pki: key file permissions too open")

// maxPEMFile bounds the files read, so a wrong path (a device, a huge log)
// fails fast.
const maxPEMFile = 1 << 20

// InitOptions configures [Init].
type InitOptions struct {
	// Email is the publisher subject's emailAddress, the value verifiers
	// pin with --cnstr E=...; default [DefaultEmail].
	Email string
	// Organization is the O of every subject; default [DefaultOrganization].
	Organization string
	// Now is the issuing time; zero means time.Now().
	Now time.Time
	// Force replaces existing files instead of failing.
	Force bool
	// TLSHosts, when set, makes Init also issue a TLS server certificate
	// for these names (tls.pem, tls.key; see [IssueDevTLS]) while the root
	// key is at hand.
	TLSHosts []string
	// TSAKey is the key type of the TSA certificate (tsa.pem, tsa.key):
	// [TSAKeyRSA] when empty, or [TSAKeyECDSA].
	TSAKey TSAKeyType
}

// Files names operator-provided PEM files for [LoadFiles].
type Files struct {
	RootCert      string // the trust anchor verifiers pin; exactly one certificate
	PublisherCert string // publisher certificate first, optionally followed by its issuers
	PublisherKey  string
	CalendarCert  string // exactly one certificate
	CalendarKey   string
	// Intermediates are files with the publisher's issuer certificates
	// below the root, in any order.
	Intermediates []string
	// MemberCerts, optional, is a file with the calendar certificates of
	// every member of a replicated calendar (this member's may be among
	// them); the publications file carries them all. See [Set.Members].
	MemberCerts string
	// RetiredCerts, optional, is a file of calendar certificates retired
	// by key rotations, as [Rotate] writes retired-calendar.pem; the
	// publications file carries them. See [Set.Retired].
	RetiredCerts string
	// TSACert and TSAKey, optional, are the RFC 3161 TSA certificate
	// (followed by its issuers, if any) and key; both or neither.
	TSACert, TSAKey string
	// OpenKey opens the keys given as pkcs11: URIs instead of files (see
	// [KeyOpener]); nil refuses them.
	OpenKey KeyOpener
}

// DirFiles returns the [Files] of a key directory laid out as [Init]
// writes it.
func DirFiles(dir string) Files {
	return Files{
		RootCert:      filepath.Join(dir, RootCertFile),
		PublisherCert: filepath.Join(dir, PublisherCertFile),
		PublisherKey:  filepath.Join(dir, PublisherKeyFile),
		CalendarCert:  filepath.Join(dir, CalendarCertFile),
		CalendarKey:   filepath.Join(dir, CalendarKeyFile),
	}
}

var allFiles = []string{RootCertFile, RootKeyFile, PublisherCertFile, PublisherKeyFile, CalendarCertFile, CalendarKeyFile}

// Init creates a fresh development PKI in dir (see the package
// documentation) and returns it. dir is created with mode 0700 if needed
// and tightened to 0700 if it exists. Init fails if any of the six files
// exists, unless opts.Force is set; files are written to temporary names
// and renamed into place, so a crash never leaves a half-written key.
func Init(dir string, opts InitOptions) (*Set, error) {
	opts, err := initDefaults(opts)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	if runtime.GOOS != "windows" {
		if err := os.Chmod(dir, DirMode); err != nil {
			return nil, fmt.Errorf("pki: init: %w", err)
		}
	}
	names := append(allFiles[:len(allFiles):len(allFiles)], TSACertFile, TSAKeyFile, RetiredCalendarFile)
	if len(opts.TLSHosts) > 0 {
		names = append([]string{TLSCertFile, TLSKeyFile}, names...)
	}
	if !opts.Force {
		var existing []string
		for _, name := range names {
			if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
				existing = append(existing, name)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("pki: init: %w", err)
			}
		}
		if len(existing) > 0 {
			return nil, fmt.Errorf("pki: init: %s already holds %s; refusing to overwrite keys (use force to replace them)",
				dir, strings.Join(existing, ", "))
		}
	}

	files, set, err := generate(opts)
	if err != nil {
		return nil, err
	}
	if err := clearRotation(dir); err != nil {
		clearFiles(files)
		return nil, fmt.Errorf("pki: init: %w", err)
	}
	for i, f := range files {
		if err := writeFileAtomic(filepath.Join(dir, f.name), f.data, f.mode); err != nil {
			// Leave no mix of new and old files behind.
			for _, w := range files[:i] {
				os.Remove(filepath.Join(dir, w.name))
			}
			clearFiles(files)
			return nil, fmt.Errorf("pki: init: %w", err)
		}
	}
	clearFiles(files)
	syncDir(dir)
	set.RootPath = filepath.Join(dir, RootCertFile)
	if len(opts.TLSHosts) > 0 {
		// The old certificate was issued by the replaced root.
		for _, name := range []string{TLSCertFile, TLSKeyFile} {
			if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("pki: init: %w", err)
			}
		}
		if err := IssueDevTLS(dir, opts.TLSHosts, opts.Now); err != nil {
			return nil, err
		}
	}
	return newSet(set)
}

// initDefaults fills the defaults of opts and checks the e-mail address.
func initDefaults(opts InitOptions) (InitOptions, error) {
	if opts.Email == "" {
		opts.Email = DefaultEmail
	}
	if opts.Organization == "" {
		opts.Organization = DefaultOrganization
	}
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	return opts, checkEmail(opts.Email)
}

type outFile struct {
	name string
	data []byte
	mode fs.FileMode
}

func clearFiles(files []outFile) {
	for _, f := range files {
		if f.mode == KeyMode {
			clear(f.data)
		}
	}
}

func checkEmail(e string) error {
	if !strings.Contains(e, "@") {
		return fmt.Errorf("pki: e-mail address %q has no @", e)
	}
	for _, r := range e {
		if r <= ' ' || r > '~' || r == ',' {
			return fmt.Errorf("pki: e-mail address %q: only printable ASCII without spaces or commas is allowed", e)
		}
	}
	return nil
}

// generate makes the keys and certificates of a development PKI.
func generate(opts InitOptions) ([]outFile, *Set, error) {
	ca, err := newDevCA(opts)
	if err != nil {
		return nil, nil, err
	}
	publisher, pubKey, err := ca.publisher()
	if err != nil {
		return nil, nil, err
	}
	calendar, calKey, err := ca.calendar("Tempel calendar signer")
	if err != nil {
		return nil, nil, err
	}
	var files []outFile
	for _, k := range []struct {
		name string
		key  crypto.PrivateKey
		cert *x509.Certificate
		cn   string
	}{
		{RootKeyFile, ca.key, ca.root, RootCertFile},
		{PublisherKeyFile, pubKey, publisher, PublisherCertFile},
		{CalendarKeyFile, calKey, calendar, CalendarCertFile},
	} {
		pair, err := pemPair(k.cn, k.cert, k.name, k.key)
		if err != nil {
			clearFiles(files)
			return nil, nil, err
		}
		files = append(files, pair...)
	}
	tsa, tsaCert, tsaKey, err := tsaFiles(ca.root, ca.key, "Tempel TSA", opts)
	if err != nil {
		clearFiles(files)
		return nil, nil, err
	}
	files = append(files, tsa...)
	return files, &Set{Root: ca.root, Publisher: publisher, PublisherKey: pubKey, Calendar: calendar, CalendarKey: calKey,
		TSA: tsaCert, TSAKey: tsaKey}, nil
}

// devCA is a development root CA being made, with its key at hand to
// issue the leaf certificates.
type devCA struct {
	opts      InitOptions
	notBefore time.Time
	root      *x509.Certificate
	key       *rsa.PrivateKey
}

func newDevCA(opts InitOptions) (*devCA, error) {
	key, err := rsa.GenerateKey(rand.Reader, RootKeyBits)
	if err != nil {
		return nil, fmt.Errorf("pki: init: root key: %w", err)
	}
	notBefore := opts.Now.Add(-ClockSkew).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		Subject:               pkix.Name{CommonName: "Tempel root CA", Organization: []string{opts.Organization}},
		NotBefore:             notBefore,
		NotAfter:              notBefore.Add(RootValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		SignatureAlgorithm:    x509.SHA256WithRSA,
	}
	root, err := issue(tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("pki: init: root certificate: %w", err)
	}
	return &devCA{opts: opts, notBefore: notBefore, root: root, key: key}, nil
}

// publisher issues the publications file signer certificate.
func (ca *devCA) publisher() (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, PublisherKeyBits)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: init: publisher key: %w", err)
	}
	tmpl, err := publisherTemplate(ca.opts)
	if err != nil {
		return nil, nil, err
	}
	tmpl.NotBefore, tmpl.NotAfter = ca.notBefore, ca.notBefore.Add(LeafValidity)
	cert, err := issue(tmpl, ca.root, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: init: publisher certificate: %w", err)
	}
	return cert, key, nil
}

// calendar issues a calendar root signer certificate with common name cn.
func (ca *devCA) calendar(cn string) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, CalendarKeyBits)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: init: calendar key: %w", err)
	}
	tmpl := calendarTemplate(ca.opts, cn)
	tmpl.NotBefore, tmpl.NotAfter = ca.notBefore, ca.notBefore.Add(LeafValidity)
	cert, err := issue(tmpl, ca.root, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: init: calendar certificate: %w", err)
	}
	return cert, key, nil
}

// pemPair encodes a certificate (mode 0644) and its key (PKCS#8, mode
// 0600) as files to write.
func pemPair(certName string, cert *x509.Certificate, keyName string, key crypto.PrivateKey) ([]outFile, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("pki: init: encode %s: %w", keyName, err)
	}
	defer clear(der)
	return []outFile{
		{certName, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}), CertMode},
		{keyName, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), KeyMode},
	}, nil
}

func issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial.Add(serial, big.NewInt(1)) // positive, never zero
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

// writeFileAtomic writes data to a new file created with mode perm (never
// widened afterwards) and renames it to path.
func writeFileAtomic(path string, data []byte, perm fs.FileMode) error {
	var suffix [8]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return err
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp-"+hex.EncodeToString(suffix[:]))
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // best effort: not supported everywhere
		d.Close()
	}
}

// Load reads the key set of a directory written by [Init] or
// [InitMembers]: root.pem, publisher.pem/.key, calendar.pem/.key, and
// members.pem when it is there. root.key is not loaded into the
// set (only issuing needs it) and may be kept offline; when it is present
// its mode is checked like the other keys and it must match root.pem.
func Load(dir string) (*Set, error) {
	if err := checkNoStaged(dir); err != nil {
		return nil, err
	}
	files := DirFiles(dir)
	if p := filepath.Join(dir, MembersFile); present(p) {
		files.MemberCerts = p
	}
	if p := filepath.Join(dir, RetiredCalendarFile); present(p) {
		files.RetiredCerts = p
	}
	s, err := LoadFiles(files)
	if err != nil {
		return nil, err
	}
	rootKeyPath := filepath.Join(dir, RootKeyFile)
	if _, err := os.Lstat(rootKeyPath); err == nil {
		k, err := readKeyFile(rootKeyPath)
		if err != nil {
			return nil, err
		}
		if !publicKeysEqual(s.Root.PublicKey, k.Public()) {
			return nil, fmt.Errorf("pki: %s does not belong to %s", rootKeyPath, s.RootPath)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if err := s.loadDirTSA(dir); err != nil {
		return nil, err
	}
	return s, nil
}

// LoadOrInit loads the key set in dir, or creates a development PKI there
// (created = true) when none of the six files exists yet. A directory with
// only some of the files is an error: it is never completed or overwritten.
func LoadOrInit(dir string, opts InitOptions) (set *Set, created bool, err error) {
	var present, missing []string
	for _, name := range allFiles {
		if _, err := os.Lstat(filepath.Join(dir, name)); err == nil {
			present = append(present, name)
		} else if errors.Is(err, fs.ErrNotExist) {
			missing = append(missing, name)
		} else {
			return nil, false, fmt.Errorf("pki: %w", err)
		}
	}
	if len(present) == 0 {
		opts.Force = false
		set, err := Init(dir, opts)
		return set, err == nil, err
	}
	if len(missing) == 0 || (len(missing) == 1 && missing[0] == RootKeyFile) {
		set, err := Load(dir)
		if _, kerr := os.Lstat(filepath.Join(dir, TSAKeyFile)); err == nil && set.TSA == nil && len(missing) == 0 && errors.Is(kerr, fs.ErrNotExist) {
			// A directory made before the TSA existed, with its root key:
			// the single-node development layout gets its TSA now.
			if err := IssueTSA(dir, opts); err != nil {
				return nil, false, err
			}
			set, err = Load(dir)
		}
		return set, false, err
	}
	return nil, false, fmt.Errorf("pki: %s holds %s but lacks %s; restore the missing files or remove the directory to start a new development PKI",
		dir, strings.Join(present, ", "), strings.Join(missing, ", "))
}

// LoadFiles reads operator-provided PEM files. Certificates may also be
// DER; keys must be PEM (PKCS#8 "PRIVATE KEY", or PKCS#1/SEC 1 "RSA/EC
// PRIVATE KEY"), unencrypted, and not accessible by group or others. The
// publisher key may be RSA or ECDSA; the calendar key must be RSA-2048 or
// larger with a certificate signed with sha256WithRSAEncryption. The
// publisher certificate must chain to RootCert through the intermediates.
func LoadFiles(f Files) (*Set, error) {
	roots, err := readCertFile(f.RootCert)
	if err != nil {
		return nil, err
	}
	if len(roots) != 1 {
		return nil, fmt.Errorf("pki: %s holds %d certificates, want exactly one root", f.RootCert, len(roots))
	}
	pubChain, err := readCertFile(f.PublisherCert)
	if err != nil {
		return nil, err
	}
	intermediates := pubChain[1:]
	for _, p := range f.Intermediates {
		cs, err := readCertFile(p)
		if err != nil {
			return nil, err
		}
		intermediates = append(intermediates, cs...)
	}
	cals, err := readCertFile(f.CalendarCert)
	if err != nil {
		return nil, err
	}
	if len(cals) != 1 {
		return nil, fmt.Errorf("pki: %s holds %d certificates, want exactly one", f.CalendarCert, len(cals))
	}
	pubKey, err := f.OpenKey.open(f.PublisherKey)
	if err != nil {
		return nil, err
	}
	calKey, err := f.OpenKey.open(f.CalendarKey)
	if err != nil {
		return nil, err
	}
	if _, ok := calKey.Public().(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("pki: %s: calendar key is %s, must be RSA", f.CalendarKey, keyKind(calKey))
	}
	s, err := newSet(&Set{
		Root:          roots[0],
		RootPath:      f.RootCert,
		Publisher:     pubChain[0],
		PublisherKey:  pubKey,
		Intermediates: intermediates,
		Calendar:      cals[0],
		CalendarKey:   calKey,
	})
	if err != nil {
		return nil, err
	}
	if f.TSACert != "" || f.TSAKey != "" {
		if err := s.UseTSAWith(f.TSACert, f.TSAKey, f.OpenKey); err != nil {
			return nil, err
		}
	}
	if f.MemberCerts != "" {
		members, err := readCertFile(f.MemberCerts)
		if err != nil {
			return nil, err
		}
		if err := s.setMembers(members, f.MemberCerts); err != nil {
			return nil, err
		}
	}
	if f.RetiredCerts != "" {
		if err := s.loadRetired(f.RetiredCerts); err != nil {
			return nil, err
		}
	}
	return s, nil
}

func keyKind(k crypto.Signer) string {
	return strings.TrimPrefix(fmt.Sprintf("%T", k.Public()), "*")
}

func readCertFile(path string) ([]*x509.Certificate, error) {
	if path == "" {
		return nil, errors.New("pki: certificate file not configured")
	}
	b, err := readLimited(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	cs, err := verifier.ParseCertificates(b)
	if err != nil {
		return nil, fmt.Errorf("pki: %s: %w", path, err)
	}
	return cs, nil
}

func readLimited(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return readAllLimited(f, path)
}

func readAllLimited(f *os.File, path string) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(f, maxPEMFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > maxPEMFile {
		clear(b)
		return nil, fmt.Errorf("%s is larger than %d bytes", path, maxPEMFile)
	}
	return b, nil
}

// readKeyFile reads a private key, refusing files that group or others
// may access. Errors name the file but never quote its content.
func readKeyFile(path string) (crypto.Signer, error) {
	if path == "" {
		return nil, errors.New("pki: key file not configured")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("pki: key file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return nil, fmt.Errorf("%w: %s has mode %04o, so group or others may read it; run `chmod 600 %s` (and check who could have copied it)",
			ErrKeyPermissions, path, perm, path)
	}
	b, err := readAllLimited(f, path)
	if err != nil {
		return nil, fmt.Errorf("pki: %w", err)
	}
	defer clear(b)
	var blk *pem.Block
	for rest := b; ; {
		if blk, rest = pem.Decode(rest); blk == nil || strings.HasSuffix(blk.Type, "PRIVATE KEY") {
			break
		}
	}
	if blk == nil {
		return nil, fmt.Errorf("pki: %s holds no PEM private key", path)
	}
	defer clear(blk.Bytes)
	if _, ok := blk.Headers["DEK-Info"]; ok || blk.Type == "ENCRYPTED PRIVATE KEY" {
		return nil, fmt.Errorf("pki: %s is encrypted; provide an unencrypted key protected by file permissions", path)
	}
	var key any
	switch blk.Type {
	case "PRIVATE KEY":
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	case "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	case "EC PRIVATE KEY":
		key, err = x509.ParseECPrivateKey(blk.Bytes)
	default:
		return nil, fmt.Errorf("pki: %s: unsupported PEM block %q", path, blk.Type)
	}
	if err != nil {
		// x509 parse errors describe the structure, never the bytes.
		return nil, fmt.Errorf("pki: %s: cannot parse %s: %v", path, blk.Type, err)
	}
	s, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("pki: %s: key type %T cannot sign", path, key)
	}
	return s, nil
}
