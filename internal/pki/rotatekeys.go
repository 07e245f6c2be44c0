package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// RotateOptions selects what [Rotate] replaces.
type RotateOptions struct {
	// Calendar replaces the calendar signing key and certificate and
	// retires the old certificate (retired-calendar.pem).
	Calendar bool
	// Publisher replaces the publisher key and certificate; the new
	// certificate has the old one's subject, so verifiers' --cnstr still
	// matches.
	Publisher bool
	// TSA replaces the RFC 3161 TSA key and certificate (or issues them
	// when the directory has none).
	TSA bool
	// TLS replaces the development TLS server certificate and key.
	TLS bool
	// RootKey is the root CA key file; empty means root.key in the key
	// directory (a replicated calendar keeps it in DIR/ca, [CADir]).
	RootKey string
	// Now is the retirement time (the CLI gives the newest second the
	// calendar signed): the retired calendar certificate ends
	// then. Zero means time.Now().
	Now time.Time
	// TSAKey is the new TSA key's type; empty keeps the current one's.
	TSAKey TSAKeyType
	// TLSHosts are the new TLS certificate's names; empty keeps the
	// current one's ([DevTLSHosts] when there is none).
	TLSHosts []string
}

// RotateResult is what [Rotate] did.
type RotateResult struct {
	// Set is the key directory as [Load] reads it afterwards.
	Set *Set
	// Rotated names the pairs replaced ("calendar", "publisher", "tsa",
	// "tls"), including those of an interrupted rotation finished now.
	Rotated []string
	// Finished names the pairs whose interrupted rotation this run finished.
	Finished []string
	// Retired are the calendar certificates this run retired.
	Retired []RetiredCert
}

// rotateStep is called after each durable step of [Rotate] with its name;
// an error stops Rotate there, as a crash would. Tests set it.
var rotateStep = func(string) error { return nil }

// Rotate replaces keys of the key directory dir with new ones issued by
// the same root (docs/design/rotation.md), so that verifiers who pin
// root.pem (and the publisher's --cnstr) need change nothing. The root
// key must be at hand (opts.RootKey), and dir must load as it is. No
// server may use dir meanwhile: the caller makes sure (`tempel keys
// rotate` holds the calendar store's lock).
//
// A calendar rotation keeps the old calendar key's signatures verifiable:
// the old certificate is re-issued by the root to end at opts.Now and appended to
// retired-calendar.pem with the SHA-256 of the old certificate, whose id
// the old calendar authentication records carry; [Set.CertificateRecords]
// publishes it under that id. A members.pem in dir gets the new
// certificate in place of the old one.
//
// Every file is written to a temporary name and renamed, in an order that
// leaves dir loadable at every point or refused by [Load] with an error
// wrapping [ErrRotationInterrupted]: new keys and certificates are first
// staged as NAME-next.key and NAME-next.pem, then the calendar
// certificate retired, then the staged key and certificate renamed into
// place. Running Rotate again on an interrupted directory finishes what
// was staged.
func Rotate(dir string, opts RotateOptions) (*RotateResult, error) {
	if opts.Now.IsZero() {
		opts.Now = time.Now()
	}
	if opts.RootKey == "" {
		opts.RootKey = filepath.Join(dir, RootKeyFile)
	}
	r, err := newRotation(dir, opts)
	if err != nil {
		return nil, err
	}
	res := &RotateResult{}
	for _, p := range rotatedPairs {
		done, err := r.finishStaged(p.kind, p.cert, p.key, res)
		if err != nil {
			return nil, err
		}
		if done {
			res.Finished = append(res.Finished, p.kind)
			res.Rotated = append(res.Rotated, p.kind)
		}
	}
	// Nothing new is made for a directory that is broken already.
	if _, err := Load(dir); err != nil {
		return nil, fmt.Errorf("pki: rotate: %s does not load as it is, so it is not rotated: %w", dir, err)
	}
	want := map[string]bool{"calendar": opts.Calendar, "publisher": opts.Publisher, "tsa": opts.TSA, "tls": opts.TLS}
	for _, p := range rotatedPairs {
		if !want[p.kind] || slices.Contains(res.Finished, p.kind) {
			continue
		}
		if err := r.stage(p.kind, p.cert, p.key); err != nil {
			return nil, err
		}
		if _, err := r.finishStaged(p.kind, p.cert, p.key, res); err != nil {
			return nil, err
		}
		res.Rotated = append(res.Rotated, p.kind)
	}
	if res.Set, err = Load(dir); err != nil {
		return nil, fmt.Errorf("pki: rotate: reading back %s: %w", dir, err)
	}
	return res, nil
}

// rotation is one run of [Rotate].
type rotation struct {
	dir     string
	opts    RotateOptions
	root    *x509.Certificate
	rootKey crypto.Signer
}

func newRotation(dir string, opts RotateOptions) (*rotation, error) {
	rootPath := filepath.Join(dir, RootCertFile)
	roots, err := readCertFile(rootPath)
	if err != nil {
		return nil, err
	}
	if len(roots) != 1 {
		return nil, fmt.Errorf("pki: %s holds %d certificates, want exactly one root", rootPath, len(roots))
	}
	if !present(opts.RootKey) {
		return nil, fmt.Errorf("pki: rotate: the root key %s is not there; new certificates are issued by the root: give its key (a replicated calendar's is DIR/%s/%s)",
			opts.RootKey, CADir, RootKeyFile)
	}
	rootKey, err := readKeyFile(opts.RootKey)
	if err != nil {
		return nil, err
	}
	if !publicKeysEqual(roots[0].PublicKey, rootKey.Public()) {
		return nil, fmt.Errorf("pki: rotate: %s does not belong to %s; rotation keeps the root, so it needs that root's key", opts.RootKey, rootPath)
	}
	return &rotation{dir: dir, opts: opts, root: roots[0], rootKey: rootKey}, nil
}

func (r *rotation) path(name string) string { return filepath.Join(r.dir, name) }

func (r *rotation) step(name string) error {
	syncDir(r.dir)
	if err := rotateStep(name); err != nil {
		return fmt.Errorf("pki: rotate: stopped after %s: %w", name, err)
	}
	return nil
}

// stage writes a new key and certificate of kind under the staged names,
// the key first: a staged certificate means a complete pair.
func (r *rotation) stage(kind, certName, keyName string) error {
	certPEM, keyPEM, err := r.issue(kind, certName)
	if err != nil {
		return err
	}
	defer clear(keyPEM)
	if err := writeFileAtomic(r.path(stagedName(keyName)), keyPEM, KeyMode); err != nil {
		return fmt.Errorf("pki: rotate: %w", err)
	}
	if err := r.step("staged " + stagedName(keyName)); err != nil {
		return err
	}
	if err := writeFileAtomic(r.path(stagedName(certName)), certPEM, CertMode); err != nil {
		return fmt.Errorf("pki: rotate: %w", err)
	}
	return r.step("staged " + stagedName(certName))
}

// finishStaged completes a staged replacement of kind, if there is one:
// retires the calendar certificate, then renames the staged key and
// certificate into place. A staged key without its certificate is what a
// stop in the middle of staging leaves; it was never used and is removed.
func (r *rotation) finishStaged(kind, certName, keyName string, res *RotateResult) (bool, error) {
	nextCert, nextKey := r.path(stagedName(certName)), r.path(stagedName(keyName))
	if !present(nextCert) {
		if present(nextKey) {
			if err := os.Remove(nextKey); err != nil {
				return false, fmt.Errorf("pki: rotate: %w", err)
			}
		}
		return false, nil
	}
	certs, err := readCertFile(nextCert)
	if err != nil {
		return false, err
	}
	keyPath := nextKey
	if !present(keyPath) {
		keyPath = r.path(keyName) // renamed into place already
	}
	key, err := readKeyFile(keyPath)
	if err != nil {
		return false, err
	}
	if !publicKeysEqual(certs[0].PublicKey, key.Public()) {
		return false, fmt.Errorf("pki: rotate: %s does not belong to %s; the key directory was changed during a rotation: restore it from a backup", keyPath, nextCert)
	}
	if kind == "calendar" {
		if err := r.retireCalendar(certs[0], res); err != nil {
			return false, err
		}
	}
	if keyPath == nextKey {
		if err := os.Rename(nextKey, r.path(keyName)); err != nil {
			return false, fmt.Errorf("pki: rotate: %w", err)
		}
		if err := r.step("renamed " + keyName); err != nil {
			return false, err
		}
	}
	if err := os.Rename(nextCert, r.path(certName)); err != nil {
		return false, fmt.Errorf("pki: rotate: %w", err)
	}
	return true, r.step("renamed " + certName)
}

// retireCalendar re-issues the current calendar certificate to end at opts.Now
// and appends it to retired-calendar.pem, unless an earlier, interrupted
// run did; then puts next in its place in members.pem, if there is one.
func (r *rotation) retireCalendar(next *x509.Certificate, res *RotateResult) error {
	curPath := r.path(CalendarCertFile)
	cur, err := readCertFile(curPath)
	if err != nil {
		return err
	}
	old := cur[0]
	if old.Equal(next) {
		return nil
	}
	retiredPath := r.path(RetiredCalendarFile)
	var have []RetiredCert
	var file []byte
	if present(retiredPath) {
		if have, err = readRetired(retiredPath); err != nil {
			return err
		}
		if file, err = readLimited(retiredPath); err != nil {
			return fmt.Errorf("pki: rotate: %w", err)
		}
	}
	done := slices.ContainsFunc(have, func(rc RetiredCert) bool {
		return bytes.Equal(rc.ID, certID(old)) && publicKeysEqual(rc.Cert.PublicKey, old.PublicKey)
	})
	if !done {
		if len(have) >= MaxRetiredCerts {
			return fmt.Errorf("pki: rotate: %s holds %d certificates already, the most accepted", retiredPath, len(have))
		}
		c, err := reissueRetired(old, r.root, r.rootKey, r.opts.Now)
		if err != nil {
			return err
		}
		if len(file) > 0 && file[len(file)-1] != '\n' {
			file = append(file, '\n')
		}
		if err := writeFileAtomic(retiredPath, append(file, retiredPEM(c, old.Raw)...), CertMode); err != nil {
			return fmt.Errorf("pki: rotate: %w", err)
		}
		res.Retired = append(res.Retired, RetiredCert{Cert: c, ID: certID(old)})
		if err := r.step("wrote " + RetiredCalendarFile); err != nil {
			return err
		}
	}
	return r.replaceMember(old, next)
}

// replaceMember puts next in place of old in members.pem, if the key
// directory has one (a member of a replicated calendar).
func (r *rotation) replaceMember(old, next *x509.Certificate) error {
	path := r.path(MembersFile)
	if !present(path) {
		return nil
	}
	certs, err := readCertFile(path)
	if err != nil {
		return err
	}
	var out []byte
	replaced := false
	for _, c := range certs {
		switch {
		case c.Equal(old):
			c, replaced = next, true
		case c.Equal(next):
			replaced = true
		}
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})...)
	}
	if !replaced {
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: next.Raw})...)
	}
	if err := writeFileAtomic(path, out, CertMode); err != nil {
		return fmt.Errorf("pki: rotate: %w", err)
	}
	return r.step("wrote " + MembersFile)
}

// issue makes a new key and certificate of kind, modelled on the current
// certificate certName (its subject, its names), and returns them in PEM
// form.
func (r *rotation) issue(kind, certName string) (certPEM, keyPEM []byte, err error) {
	var cur *x509.Certificate
	if p := r.path(certName); present(p) {
		cs, err := readCertFile(p)
		if err != nil {
			return nil, nil, err
		}
		cur = cs[0]
	}
	if cur == nil && kind != "tsa" && kind != "tls" {
		return nil, nil, fmt.Errorf("pki: rotate: %s is not there", r.path(certName))
	}
	switch kind {
	case "calendar":
		return r.issueCalendar(cur)
	case "publisher":
		return r.issueLeaf(cur, PublisherKeyBits)
	case "tsa":
		opts := InitOptions{Now: r.opts.Now, Organization: DefaultOrganization, TSAKey: r.opts.TSAKey}
		if o := r.root.Subject.Organization; len(o) > 0 {
			opts.Organization = o[0]
		}
		cn := "Tempel TSA"
		if cur != nil {
			cn = cur.Subject.CommonName
			if _, ok := cur.PublicKey.(*ecdsa.PublicKey); ok && opts.TSAKey == "" {
				opts.TSAKey = TSAKeyECDSA
			}
		}
		cert, key, err := issueTSA(r.root, r.rootKey, cn, opts)
		if err != nil {
			return nil, nil, err
		}
		return encodePair(cert, key)
	default: // tls
		hosts := r.opts.TLSHosts
		if len(hosts) == 0 && cur != nil {
			hosts = append(hosts, cur.DNSNames...)
			for _, ip := range cur.IPAddresses {
				hosts = append(hosts, ip.String())
			}
		}
		if len(hosts) == 0 {
			hosts = DevTLSHosts
		}
		return issueTLS(r.root, r.rootKey, hosts, r.opts.Now)
	}
}

// issueCalendar issues a calendar certificate with cur's subject, whose
// id differs from every id the publications file carries.
func (r *rotation) issueCalendar(cur *x509.Certificate) ([]byte, []byte, error) {
	taken := map[string]bool{string(certID(cur)): true}
	if present(r.path(RetiredCalendarFile)) {
		rs, err := readRetired(r.path(RetiredCalendarFile))
		if err != nil {
			return nil, nil, err
		}
		for _, rc := range rs {
			taken[string(rc.ID)] = true
		}
	}
	if present(r.path(MembersFile)) {
		ms, err := readCertFile(r.path(MembersFile))
		if err != nil {
			return nil, nil, err
		}
		for _, m := range ms {
			taken[string(certID(m))] = true
		}
	}
	for range 3 { // ids are 32 bits: a clash is rare, three in a row never happen
		cert, key, err := r.issueLeafCert(cur, CalendarKeyBits)
		if err != nil {
			return nil, nil, err
		}
		if !taken[string(certID(cert))] {
			return encodePair(cert, key)
		}
	}
	return nil, nil, errors.New("pki: rotate: every new calendar certificate had the id of one already published")
}

// issueLeaf issues a certificate like cur (subject, key usage) for a new
// RSA key, valid from now for [LeafValidity], and encodes both.
func (r *rotation) issueLeaf(cur *x509.Certificate, bits int) ([]byte, []byte, error) {
	cert, key, err := r.issueLeafCert(cur, bits)
	if err != nil {
		return nil, nil, err
	}
	return encodePair(cert, key)
}

func (r *rotation) issueLeafCert(cur *x509.Certificate, bits int) (*x509.Certificate, *rsa.PrivateKey, error) {
	key, err := rsa.GenerateKey(rand.Reader, bits)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: rotate: %w", err)
	}
	notBefore := r.opts.Now.Add(-ClockSkew).UTC().Truncate(time.Second)
	tmpl := &x509.Certificate{
		RawSubject:         cur.RawSubject,
		NotBefore:          notBefore,
		NotAfter:           notBefore.Add(LeafValidity),
		KeyUsage:           x509.KeyUsageDigitalSignature,
		SignatureAlgorithm: x509.SHA256WithRSA,
	}
	cert, err := issue(tmpl, r.root, key.Public(), r.rootKey)
	if err != nil {
		return nil, nil, fmt.Errorf("pki: rotate: certificate for %q: %w", cur.Subject, err)
	}
	return cert, key, nil
}

func encodePair(cert *x509.Certificate, key crypto.PrivateKey) ([]byte, []byte, error) {
	files, err := pemPair("cert", cert, "key", key)
	if err != nil {
		return nil, nil, err
	}
	return files[0].data, files[1].data, nil
}
