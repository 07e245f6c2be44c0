package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

func keysRotateCommand(dataDir ucli.Flag) *ucli.Command {
	return &ucli.Command{
		Name:  "rotate",
		Usage: "replace the calendar key (and, with flags, the publisher, TSA and TLS keys) by new ones issued by the same root; signatures made before keep verifying",
		Description: "The server must be stopped: rotate refuses while DATA-DIR/calendar is in use, and\n" +
			"holds its lock meanwhile. The old calendar certificate is re-issued by the root to\n" +
			"end at the newest second the calendar signed and kept in\n" +
			"DATA-DIR/keys/retired-calendar.pem; the publications file\n" +
			"carries it under its old certificate id, so signatures made under the old key keep\n" +
			"verifying key-based, and a root dated after now signed with the old key does not.\n" +
			"The publisher's new certificate has the old one's subject: verifiers that pin\n" +
			"root.pem and --cnstr E=... change nothing. The root key must be at hand\n" +
			"(--root-key; a replicated calendar keeps it in DIR/ca/root.key). Every file is\n" +
			"written to a temporary name and renamed; after a crash the server refuses the key\n" +
			"directory until rotate is run again, which finishes the rotation. A member of a\n" +
			"replicated calendar: then copy its keys/members.pem and keys/retired-calendar.pem\n" +
			"to every other member and restart them (docs/design/rotation.md).",
		Flags: []ucli.Flag{dataDir,
			&ucli.BoolFlag{Name: "calendar", Value: true, Usage: "replace the calendar signing key (--calendar=false to keep it)"},
			&ucli.BoolFlag{Name: "publisher", Usage: "replace the publisher key and renew its certificate (same subject and e-mail address)"},
			&ucli.BoolFlag{Name: "tsa", Usage: "replace the RFC 3161 TSA key and certificate"},
			&ucli.StringFlag{Name: "tsa-key", Usage: "key type of the new TSA key: rsa or ecdsa (default: that of the current one)"},
			&ucli.BoolFlag{Name: "tls", Usage: "replace the development TLS server key and certificate (same host names)"},
			&ucli.StringFlag{Name: "root-key", Usage: "the root CA key `FILE` that issues the new certificates (default DIR/keys/root.key)"},
			&ucli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: keysRotate,
	}
}

func keysRotate(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("keys rotate takes no arguments, got %q", c.Args().First())
	}
	opts := pki.RotateOptions{Calendar: c.Bool("calendar"), Publisher: c.Bool("publisher"), TSA: c.Bool("tsa"), TLS: c.Bool("tls"),
		RootKey: c.String("root-key"), TSAKey: pki.TSAKeyType(c.String("tsa-key"))}
	if k := opts.TSAKey; k != "" && k != pki.TSAKeyRSA && k != pki.TSAKeyECDSA {
		return usageErrorf("--tsa-key %q: want %s or %s", k, pki.TSAKeyRSA, pki.TSAKeyECDSA)
	}
	dataDir := c.String("data-dir")
	dir := filepath.Join(dataDir, "keys")
	if _, err := os.Stat(filepath.Join(dir, pki.RootCertFile)); err != nil {
		return inputErrorf("keys: %s: no key directory to rotate (%v)", dir, err)
	}
	store, last, err := openStore(dataDir)
	if err != nil {
		return err
	}
	defer store.Close()
	if opts.Calendar {
		if err := checkKeysInUse(store, dir); err != nil {
			return err
		}
	}
	opts.Now = retirementTime(time.Now(), last)
	res, err := pki.Rotate(dir, opts)
	if err != nil {
		return inputErrorf("%v", err)
	}
	return showRotation(c.App.Writer, c.Bool("json"), dir, res)
}

// checkKeysInUse refuses to rotate the calendar key of a key directory
// the server does not sign with: its stored publications file carries
// neither the directory's calendar certificate nor one it retired. That
// is a server on keys in a token or the operator's own files (rotated
// with tempel keys retire), beside a development key directory that a
// rotation would change to no effect.
func checkKeysInUse(store io.Closer, dir string) error {
	st, ok := store.(*calendar.Store)
	if !ok {
		return nil // no calendar yet
	}
	file, err := st.StoredPublicationsFile()
	if err != nil || file == nil {
		return nil // nothing served yet, or left to the server's checks
	}
	pf, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		return nil
	}
	set, err := pki.Load(dir)
	if err != nil {
		return nil // Rotate says what is wrong with it, or finishes it
	}
	ids := [][]byte{set.CalendarCertID()}
	for _, r := range set.Retired {
		ids = append(ids, r.ID)
	}
	for _, id := range ids {
		if pf.CertificateByID(id) != nil {
			return nil
		}
	}
	return inputErrorf("keys: the server on %s does not sign with %s (its publications file carries certificate %X of neither it nor a certificate it retired): "+
		"a key in a PKCS#11 token, or the operator's own files, are rotated with `tempel keys hsm-init --label-prefix ...` and `tempel keys retire --cert OLD.pem --retired-certs FILE`",
		filepath.Dir(dir), filepath.Join(dir, pki.CalendarCertFile), set.CalendarCertID())
}

// openStore opens the calendar store read-only, which takes its lock: a
// running server holds it, and rotating keys under a server that keeps
// signing with the old key would make signatures the retired certificate
// no longer covers. Holding it also keeps a server from starting halfway
// through. last is the newest second the calendar signed (0 without a
// store).
func openStore(dataDir string) (io.Closer, uint64, error) {
	dir := filepath.Join(dataDir, "calendar")
	if !calendar.StoreExists(dir) {
		return io.NopCloser(nil), 0, nil // no calendar yet: nothing was signed
	}
	st, err := calendar.OpenStore(dir, calendar.StoreOptions{ReadOnly: true, CacheBytes: 1 << 20, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return nil, 0, inputErrorf("keys: stop the server before rotating its keys: %v", err)
	}
	_, last, _ := st.Head()
	return st, last, nil
}

// retirementTime is when the old calendar key retires: the newest second
// the calendar signed, or now for a data directory without a calendar.
// The key signed nothing after that second (the server is stopped, and
// the store's lock keeps it so), and a thief of the key must not get the
// time the server stood still to sign roots that verify.
func retirementTime(now time.Time, last uint64) time.Time {
	if last == 0 {
		return now
	}
	return time.Unix(int64(min(last, 1<<62)), 0)
}

type rotateInfo struct {
	KeysDir        string     `json:"keys_dir"`
	Rotated        []string   `json:"rotated"`
	Finished       []string   `json:"finished_interrupted,omitempty"`
	CalendarCertID string     `json:"calendar_cert_id"`
	Retired        []certInfo `json:"retired_now,omitempty"`
	AllRetired     []certInfo `json:"retired"`
	Constraint     string     `json:"constraint"`
	PublisherSHA   string     `json:"publisher_sha256"`
	TrustRoot      string     `json:"trust_root"`
	Members        string     `json:"members_file,omitempty"`
}

func showRotation(w io.Writer, asJSON bool, dir string, res *pki.RotateResult) error {
	s := res.Set
	info := rotateInfo{KeysDir: dir, Rotated: res.Rotated, Finished: res.Finished, CalendarCertID: fmt.Sprintf("%X", s.CalendarCertID()),
		Constraint: s.Constraint(), TrustRoot: s.RootPath, PublisherSHA: pki.Fingerprint(s.Publisher)}
	for _, r := range res.Retired {
		info.Retired = append(info.Retired, retiredCertInfo(r))
	}
	info.AllRetired = append([]certInfo{}, retiredInfo(s)...)
	if len(s.Members) > 0 {
		info.Members = filepath.Join(dir, pki.MembersFile)
	}
	if info.Rotated == nil {
		info.Rotated = []string{}
	}
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	rotated := strings.Join(info.Rotated, ", ")
	if rotated == "" {
		rotated = "nothing"
	}
	fmt.Fprintf(w, "keys:               %s\n", dir)
	fmt.Fprintf(w, "rotated:            %s\n", rotated)
	if len(info.Finished) > 0 {
		fmt.Fprintf(w, "finished:           an interrupted rotation of %s\n", strings.Join(info.Finished, ", "))
	}
	fmt.Fprintf(w, "calendar cert id:   %s (valid to %s)\n", info.CalendarCertID, s.Calendar.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
	for _, r := range info.AllRetired {
		fmt.Fprintf(w, "retired cert id:    %s (%s, valid to %s)\n", r.ID, r.Subject, r.ValidTo)
	}
	fmt.Fprintf(w, "publisher:          %s (SHA-256 %s)\n", verifier.SubjectString(s.Publisher.Subject), info.PublisherSHA)
	fmt.Fprintf(w, "pin with:           --trust-root %s --cnstr %s (unchanged)\n", info.TrustRoot, info.Constraint)
	if info.Members != "" {
		fmt.Fprintf(w, "replicated:         copy %s and %s to every other member's keys directory, then restart them all\n",
			info.Members, filepath.Join(dir, pki.RetiredCalendarFile))
	}
	fmt.Fprintf(w, "next:               start the server again; it signs with the new keys\n")
	return nil
}

// signerFingerprint is the SHA-256 fingerprint of a publications file's
// signer certificate, which tells a renewed publisher certificate from the
// one it replaced (they share the subject); "" when it cannot be read.
func signerFingerprint(pf *ksi.PublicationsFile) string {
	p7, err := pkcs7.Parse(pf.Signature)
	if err != nil {
		return ""
	}
	if s := p7.GetOnlySigner(); s != nil {
		return pki.Fingerprint(s)
	}
	return ""
}

// retiredCertsFlag passes --retired-certs on to the operator's keys; a
// development data directory reads DATA-DIR/keys/retired-calendar.pem
// instead, and a flag it would ignore is refused.
func retiredCertsFlag(c *ucli.Context, cfg *node.Config) error {
	f := c.String("retired-certs")
	if f != "" && cfg.Keys.CalendarCert == "" {
		return usageErrorf("--retired-certs goes with the operator's keys (--calendar-cert and the others); a development data directory reads DATA-DIR/keys/%s", pki.RetiredCalendarFile)
	}
	cfg.Keys.RetiredCerts = f
	return nil
}

// retiredInfo describes the set's retired calendar certificates: the id
// they are published under and the end of their validity, their
// retirement.
func retiredInfo(s *pki.Set) []certInfo {
	var out []certInfo
	for _, r := range s.Retired {
		out = append(out, retiredCertInfo(r))
	}
	return out
}

func retiredCertInfo(r pki.RetiredCert) certInfo {
	return certInfo{fmt.Sprintf("%X", r.ID), verifier.SubjectString(r.Cert.Subject), r.Cert.NotAfter.UTC().Format("2006-01-02T15:04:05Z")}
}
