package pki

import (
	"bytes"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// MembersFile is the file of a key directory holding the calendar
// certificates of every member of a replicated calendar (0644).
const MembersFile = "members.pem"

// CADir is the directory [InitMembers] keeps the development root key in,
// apart from the members' key directories.
const CADir = "ca"

// MaxMembers bounds [InitMembers]: raft clusters of 3 or 5 members are the
// norm, more than 9 only slow every commit down.
const MaxMembers = 9

// MaxMemberCerts bounds the certificates of a members file: every member's
// current one plus replaced ones kept so that older roots stay verifiable.
const MaxMemberCerts = 64

// MemberDataDir is member id's data directory below the directory given to
// [InitMembers]: DIR/node<id>, what `tempel serve --data-dir` takes; its
// keys are in MemberDataDir/keys.
func MemberDataDir(dir string, id int) string {
	return filepath.Join(dir, "node"+strconv.Itoa(id))
}

// InitMembers creates a development PKI for a replicated calendar of
// members members (1 to [MaxMembers]) below dir: one root CA and one
// publisher, which every member shares (what verifiers pin), and for each
// member its own calendar signer certificate (common name "Tempel calendar
// member N") and its own TLS server certificate for opts.TLSHosts
// ([DevTLSHosts] when empty). It lays out
//
//	dir/ca/root.pem, root.key        the root, and its key, which no member needs
//	dir/node<N>/keys/                member N's key directory as [Load] reads it:
//	    root.pem, publisher.pem/.key, calendar.pem/.key (its own), tls.pem/.key,
//	    members.pem                  every member's calendar certificate, member 1 first
//
// The root key stays out of the members' directories: with the TLS
// certificates issued here, a member never needs it, and a member that is
// broken into cannot issue certificates. Directories are made with mode
// 0700, keys 0600, every file written to a temporary name and renamed.
// InitMembers fails if any of these files exists, unless opts.Force is
// set. It returns the members' sets, member 1 first, as [Load] reads them.
func InitMembers(dir string, members int, opts InitOptions) ([]*Set, error) {
	if members < 1 || members > MaxMembers {
		return nil, fmt.Errorf("pki: init: %d members; a replicated calendar has 1 to %d", members, MaxMembers)
	}
	opts, err := initDefaults(opts)
	if err != nil {
		return nil, err
	}
	if len(opts.TLSHosts) == 0 {
		opts.TLSHosts = DevTLSHosts
	}
	plan := membersPlan(dir, members)
	if !opts.Force {
		if err := refuseExisting(plan); err != nil {
			return nil, err
		}
	}
	defer func() {
		for _, d := range plan {
			clearFiles(d.files)
		}
	}()
	if err := generateMembers(plan, opts); err != nil {
		return nil, err
	}
	if err := writePlan(dir, plan); err != nil {
		return nil, err
	}
	sets := make([]*Set, members)
	for i := range sets {
		if sets[i], err = Load(plan[i+1].dir); err != nil {
			return nil, fmt.Errorf("pki: init: reading back member %d: %w", i+1, err)
		}
	}
	return sets, nil
}

// plannedDir is a directory InitMembers writes and its files. stale
// files belong in no such directory: they count as existing keys, and
// with Force they are removed.
type plannedDir struct {
	dir   string
	names []string
	stale []string
	files []outFile
}

// membersPlan names the directories and files of InitMembers: the CA
// first, then the members in order.
func membersPlan(dir string, members int) []plannedDir {
	plan := []plannedDir{{dir: filepath.Join(dir, CADir), names: []string{RootCertFile, RootKeyFile}}}
	for i := 1; i <= members; i++ {
		plan = append(plan, plannedDir{
			dir: filepath.Join(MemberDataDir(dir, i), "keys"),
			names: []string{RootCertFile, PublisherCertFile, PublisherKeyFile, CalendarCertFile, CalendarKeyFile,
				TLSCertFile, TLSKeyFile, MembersFile, TSACertFile, TSAKeyFile},
			// A root key left by an earlier Init would not match the new root.
			stale: []string{RootKeyFile, RetiredCalendarFile},
		})
	}
	return plan
}

func refuseExisting(plan []plannedDir) error {
	var existing []string
	for _, d := range plan {
		for _, name := range append(d.names, d.stale...) {
			p := filepath.Join(d.dir, name)
			if _, err := os.Lstat(p); err == nil {
				existing = append(existing, p)
			} else if !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("pki: init: %w", err)
			}
		}
	}
	if len(existing) > 0 {
		if len(existing) > 3 {
			existing = append(existing[:3], fmt.Sprintf("and %d more", len(existing)-3))
		}
		return fmt.Errorf("pki: init: %s already exist; refusing to overwrite keys (use force to replace them)", strings.Join(existing, ", "))
	}
	return nil
}

// generateMembers fills the files of plan (from membersPlan).
func generateMembers(plan []plannedDir, opts InitOptions) error {
	ca, err := newDevCA(opts)
	if err != nil {
		return err
	}
	rootFiles, err := pemPair(RootCertFile, ca.root, RootKeyFile, ca.key)
	if err != nil {
		return err
	}
	plan[0].files = rootFiles
	publisher, pubKey, err := ca.publisher()
	if err != nil {
		return err
	}
	var membersPEM []byte
	for i := 1; i < len(plan); i++ {
		cal, calKey, err := ca.calendar(fmt.Sprintf("Tempel calendar member %d", i))
		if err != nil {
			return err
		}
		membersPEM = append(membersPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cal.Raw})...)
		tlsCert, tlsKey, err := issueTLS(ca.root, ca.key, opts.TLSHosts, opts.Now)
		if err != nil {
			return err
		}
		files := []outFile{rootFiles[0]}
		for _, pair := range []struct {
			certName, keyName string
			cert              *x509.Certificate
			key               *rsa.PrivateKey
		}{{PublisherCertFile, PublisherKeyFile, publisher, pubKey}, {CalendarCertFile, CalendarKeyFile, cal, calKey}} {
			f, err := pemPair(pair.certName, pair.cert, pair.keyName, pair.key)
			if err != nil {
				clearFiles(files)
				return err
			}
			files = append(files, f...)
		}
		tsa, _, _, err := tsaFiles(ca.root, ca.key, fmt.Sprintf("Tempel TSA member %d", i), opts)
		if err != nil {
			clearFiles(files)
			return err
		}
		files = append(files, tsa...)
		plan[i].files = append(files, outFile{TLSCertFile, tlsCert, CertMode}, outFile{TLSKeyFile, tlsKey, KeyMode})
	}
	for i := 1; i < len(plan); i++ {
		plan[i].files = append(plan[i].files, outFile{MembersFile, membersPEM, CertMode})
	}
	return nil
}

// writePlan makes the directories (0700) and writes the files; after a
// failure it removes the files it wrote, so that no member is left with a
// mix of keys from two runs.
func writePlan(dir string, plan []plannedDir) error {
	var written []string
	fail := func(err error) error {
		for _, p := range written {
			os.Remove(p)
		}
		return fmt.Errorf("pki: init: %w", err)
	}
	if err := os.MkdirAll(dir, DirMode); err != nil {
		return fail(err)
	}
	for _, d := range plan {
		// The member's data directory too: tempel serve makes it 0700.
		if err := os.MkdirAll(d.dir, DirMode); err != nil {
			return fail(err)
		}
		if runtime.GOOS != "windows" {
			if err := os.Chmod(d.dir, DirMode); err != nil {
				return fail(err)
			}
		}
		for _, f := range d.files {
			p := filepath.Join(d.dir, f.name)
			if err := writeFileAtomic(p, f.data, f.mode); err != nil {
				return fail(err)
			}
			written = append(written, p)
		}
		for _, name := range d.stale {
			if err := os.Remove(filepath.Join(d.dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fail(err)
			}
		}
		syncDir(d.dir)
	}
	return nil
}

// present reports whether path exists; an error other than "does not
// exist" counts as present, so that reading it reports that error.
func present(path string) bool {
	_, err := os.Lstat(path)
	return !errors.Is(err, fs.ErrNotExist)
}

// setMembers checks the calendar certificates of a members file (source)
// and keeps, in order, those that are not s.Calendar or a copy.
func (s *Set) setMembers(certs []*x509.Certificate, source string) error {
	if len(certs) > MaxMemberCerts {
		return fmt.Errorf("pki: %s holds %d certificates, at most %d are accepted", source, len(certs), MaxMemberCerts)
	}
	byID := map[string]*x509.Certificate{string(s.calendarID): s.Calendar}
	for i, c := range certs {
		if c.Equal(s.Publisher) {
			return fmt.Errorf("pki: %s: certificate %d (%q): the publisher certificate, not a calendar signer", source, i+1, verifier.SubjectString(c.Subject))
		}
		if err := checkMemberCert(c, s.Root, s.Intermediates); err != nil {
			return fmt.Errorf("pki: %s: certificate %d (%q): %w", source, i+1, verifier.SubjectString(c.Subject), err)
		}
		id := certID(c)
		if prev, ok := byID[string(id)]; ok {
			if prev.Equal(c) {
				continue
			}
			return fmt.Errorf("pki: %s: certificates %q and %q have the same certificate id %X, which verifiers could not tell apart; replace one of them",
				source, verifier.SubjectString(prev.Subject), verifier.SubjectString(c.Subject), id)
		}
		byID[string(id)] = c
		s.Members = append(s.Members, c)
	}
	return nil
}

// checkMemberCert applies the checks of the set's own calendar
// certificate to another member's, and requires that it chains to the
// set's root: a certificate of another PKI in the publications file would
// let that PKI's key sign roots for this calendar.
func checkMemberCert(c, root *x509.Certificate, intermediates []*x509.Certificate) error {
	if c.IsCA {
		return errors.New("a CA certificate, not a calendar signer")
	}
	k, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("its key is %T, a calendar signer's must be RSA", c.PublicKey)
	}
	if bits := k.N.BitLen(); bits < MinCalendarKeyBits {
		return fmt.Errorf("its key is RSA-%d, at least RSA-%d is required", bits, MinCalendarKeyBits)
	}
	if c.SignatureAlgorithm != x509.SHA256WithRSA {
		return fmt.Errorf("signed with %v; verifiers compare it with the records' signature type, so it must be signed with %v",
			c.SignatureAlgorithm, x509.SHA256WithRSA)
	}
	if ku := c.KeyUsage; ku != 0 && ku&x509.KeyUsageDigitalSignature == 0 {
		return errors.New("does not allow digitalSignature")
	}
	if _, err := orderChain(c, intermediates, root, "member calendar"); err != nil {
		return fmt.Errorf("it does not chain to this calendar's trust root %q (SHA-256 %s): issued by %q, it belongs to another PKI",
			verifier.SubjectString(root.Subject), Fingerprint(root), verifier.SubjectString(c.Issuer))
	}
	return nil
}

func certID(c *x509.Certificate) []byte {
	sum := sha256.Sum256(c.Raw)
	return sum[:CertIDLen:CertIDLen]
}

// CertificateRecords returns the publications file's 0x702 records of a
// replicated calendar: this member's calendar certificate first (exactly
// [Set.CertificateRecord]), then the other members' in the order of the
// members file, each once, and last the retired calendar certificates
// ([Set.Retired]) under the ids of the certificates they replace. A
// calendar without members or retired certificates gets one record.
func (s *Set) CertificateRecords() []ksi.CertificateRecord {
	recs := []ksi.CertificateRecord{s.CertificateRecord()}
	for _, c := range s.Members {
		dup := false
		for _, r := range recs {
			dup = dup || bytes.Equal(r.DER, c.Raw)
		}
		if !dup {
			recs = append(recs, ksi.CertificateRecord{ID: certID(c), DER: bytes.Clone(c.Raw)})
		}
	}
	for _, r := range s.Retired {
		recs = append(recs, ksi.CertificateRecord{ID: bytes.Clone(r.ID), DER: bytes.Clone(r.Cert.Raw)})
	}
	return recs
}
