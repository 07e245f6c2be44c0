package pki

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// keyBased runs the key-based policy on sig against the publications file
// s builds now, after checking that file against s's root and constraint.
func keyBased(t *testing.T, s *Set, sig *ksi.Signature, doc ksi.Imprint) *verifier.Report {
	t.Helper()
	now := time.Now()
	pf := buildPubFile(t, s, now)
	if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, s, s.Constraint(), now)); err != nil {
		t.Fatalf("publications file: %v", err)
	}
	return verifier.Verify(context.Background(), sig, verifier.KeyBased, verifier.Options{Document: doc, PublicationsFile: pf.parsed})
}

func TestRotateCalendar(t *testing.T) {
	s0, dir := initIn(t, InitOptions{})
	oldSig, oldDoc := keySignedSignature(t, s0, time.Now().Add(-time.Minute))

	at := time.Now()
	res, err := Rotate(dir, RotateOptions{Calendar: true, Now: at})
	if err != nil {
		t.Fatal(err)
	}
	s1 := res.Set
	if s1.Calendar.Equal(s0.Calendar) || bytes.Equal(s1.CalendarCertID(), s0.CalendarCertID()) {
		t.Fatal("the calendar certificate was not replaced")
	}
	if len(res.Retired) != 1 || len(s1.Retired) != 1 {
		t.Fatalf("retired %d (set %d), want 1", len(res.Retired), len(s1.Retired))
	}
	r := s1.Retired[0]
	if !bytes.Equal(r.ID, s0.CalendarCertID()) || !publicKeysEqual(r.Cert.PublicKey, s0.Calendar.PublicKey) {
		t.Fatalf("retired certificate id %X, want the old %X with the old key", r.ID, s0.CalendarCertID())
	}
	if want := at.UTC().Truncate(time.Second); !r.Cert.NotAfter.Equal(want) || !r.Cert.NotBefore.Equal(s0.Calendar.NotBefore) {
		t.Errorf("retired certificate valid %s to %s, want %s to %s", r.Cert.NotBefore, r.Cert.NotAfter, s0.Calendar.NotBefore, want)
	}
	if !bytes.Equal(r.Cert.RawSubject, s0.Calendar.RawSubject) {
		t.Errorf("retired subject %q, want %q", r.Cert.Subject, s0.Calendar.Subject)
	}
	if s1.Publisher.Equal(s0.Publisher) == false || !s1.Root.Equal(s0.Root) {
		t.Error("a calendar rotation changed the root or the publisher")
	}
	recs := s1.CertificateRecords()
	if len(recs) != 2 || !bytes.Equal(recs[1].ID, s0.CalendarCertID()) || !bytes.Equal(recs[1].DER, r.Cert.Raw) {
		t.Fatalf("certificate records %v, want the new and the retired one", recs)
	}
	for _, name := range []string{"calendar-next.pem", "calendar-next.key"} {
		if present(filepath.Join(dir, name)) {
			t.Errorf("%s left behind", name)
		}
	}
	if m := mode(t, filepath.Join(dir, RetiredCalendarFile)); m != CertMode {
		t.Errorf("%s mode %v", RetiredCalendarFile, m)
	}
	if m := mode(t, filepath.Join(dir, CalendarKeyFile)); m != KeyMode {
		t.Errorf("%s mode %v", CalendarKeyFile, m)
	}
	// Other tools read the file as plain PEM, the retired certificate
	// ending at the rotation.
	if out, err := exec.Command("openssl", "x509", "-noout", "-enddate", "-in", filepath.Join(dir, RetiredCalendarFile)).CombinedOutput(); err != nil {
		t.Errorf("openssl x509: %v\n%s", err, out)
	} else if want := r.Cert.NotAfter.UTC().Format("Jan _2 15:04:05 2006 GMT"); !strings.Contains(string(out), want) {
		t.Errorf("openssl x509: %s, want notAfter=%s", out, want)
	}

	// Made under the old key before the rotation: verifies.
	if err := keyBased(t, s1, oldSig, oldDoc).Err(); err != nil {
		t.Fatalf("old signature after rotation: %v", err)
	}
	newSig, newDoc := keySignedSignature(t, s1, time.Now())
	if err := keyBased(t, s1, newSig, newDoc).Err(); err != nil {
		t.Fatalf("new signature: %v", err)
	}
	// The old key, stolen, signs a root dated after its retirement: the
	// retired certificate no longer covers that time.
	forged, forgedDoc := keySignedSignature(t, s0, at.Add(time.Minute))
	rep := keyBased(t, s1, forged, forgedDoc)
	if rep.Result != verifier.FAIL || rep.Code != verifier.KEY03 {
		t.Fatalf("root signed by the retired key after its retirement: %v %s (%s), want FAIL %s", rep.Result, rep.Code, rep.Message, verifier.KEY03)
	}

	// A second rotation keeps both retired certificates.
	res, err = Rotate(dir, RotateOptions{Calendar: true})
	if err != nil {
		t.Fatal(err)
	}
	s2 := res.Set
	if len(s2.Retired) != 2 || len(s2.CertificateRecords()) != 3 {
		t.Fatalf("after the second rotation: %d retired, %d records", len(s2.Retired), len(s2.CertificateRecords()))
	}
	for name, sig := range map[string]*ksi.Signature{"first key": oldSig, "second key": newSig} {
		doc := oldDoc
		if name == "second key" {
			doc = newDoc
		}
		if err := keyBased(t, s2, sig, doc).Err(); err != nil {
			t.Errorf("%s after the second rotation: %v", name, err)
		}
	}
	if rep := keyBased(t, s2, forged, forgedDoc); rep.Result != verifier.FAIL {
		t.Errorf("forged signature after the second rotation: %v", rep.Result)
	}
}

// TestRotateCrashSafe stops a rotation after each of its steps, as a
// crash would, and checks that the key directory then either loads
// unchanged or is refused as interrupted, and that rotating again
// finishes the job.
func TestRotateCrashSafe(t *testing.T) {
	s0, src := initIn(t, InitOptions{})
	stop := errors.New("crash")
	for n := 1; ; n++ {
		dir := copyDir(t, src)
		copyFile(t, filepath.Join(src, TSACertFile), filepath.Join(dir, TSACertFile))
		copyFile(t, filepath.Join(src, TSAKeyFile), filepath.Join(dir, TSAKeyFile))
		steps := 0
		var at string
		rotateStep = func(name string) error {
			if steps++; steps == n {
				at = name
				return stop
			}
			return nil
		}
		_, err := Rotate(dir, RotateOptions{Calendar: true, Publisher: true})
		rotateStep = func(string) error { return nil }
		if err == nil {
			if n-1 < 9 {
				t.Fatalf("only %d steps", n-1)
			}
			break
		}
		if !errors.Is(err, stop) {
			t.Fatalf("step %d: %v", n, err)
		}
		t.Run(strings.ReplaceAll(at, " ", "_"), func(t *testing.T) {
			s, err := Load(dir)
			switch {
			case errors.Is(err, ErrRotationInterrupted):
				t.Logf("refused: %v", err)
			case err != nil:
				t.Fatalf("neither loads nor is refused as interrupted: %v", err)
			default:
				// Loadable: either as before, or with the calendar
				// rotation complete.
				if !s.Calendar.Equal(s0.Calendar) && len(s.Retired) != 1 {
					t.Fatalf("loads with a new calendar certificate but %d retired", len(s.Retired))
				}
			}
			res, err := Rotate(dir, RotateOptions{})
			if err != nil {
				t.Fatalf("finishing: %v", err)
			}
			// What was staged is finished; what was not yet staged is
			// not, and a rotation asked for now completes it.
			if _, err := Rotate(dir, RotateOptions{Calendar: res.Set.Calendar.Equal(s0.Calendar), Publisher: res.Set.Publisher.Equal(s0.Publisher)}); err != nil {
				t.Fatal(err)
			}
			s, err = Load(dir)
			if err != nil {
				t.Fatal(err)
			}
			if s.Calendar.Equal(s0.Calendar) || s.Publisher.Equal(s0.Publisher) || len(s.Retired) != 1 || !bytes.Equal(s.Retired[0].ID, s0.CalendarCertID()) {
				t.Fatalf("after finishing: calendar replaced %v, publisher replaced %v, %d retired",
					!s.Calendar.Equal(s0.Calendar), !s.Publisher.Equal(s0.Publisher), len(s.Retired))
			}
		})
	}
}

func TestRotatePublisherAndTSA(t *testing.T) {
	s0, dir := initIn(t, InitOptions{Email: "pubs@example.test", TSAKey: TSAKeyECDSA})
	res, err := Rotate(dir, RotateOptions{Publisher: true, TSA: true, TLS: true})
	if err != nil {
		t.Fatal(err)
	}
	s := res.Set
	if s.Publisher.Equal(s0.Publisher) || s.TSA.Equal(s0.TSA) {
		t.Fatal("publisher or TSA certificate not replaced")
	}
	if !s.Calendar.Equal(s0.Calendar) || len(s.Retired) != 0 {
		t.Error("the calendar key changed without being asked")
	}
	if s.Constraint() != "E=pubs@example.test" || s.Constraint() != s0.Constraint() {
		t.Errorf("constraint %q, want %q", s.Constraint(), s0.Constraint())
	}
	if s.TSA.PublicKeyAlgorithm != s0.TSA.PublicKeyAlgorithm || s.TSA.Subject.CommonName != s0.TSA.Subject.CommonName {
		t.Errorf("TSA %s %q, want %s %q", s.TSA.PublicKeyAlgorithm, s.TSA.Subject.CommonName, s0.TSA.PublicKeyAlgorithm, s0.TSA.Subject.CommonName)
	}
	// The file the new publisher signs passes for verifiers who pinned
	// the root and the e-mail address before.
	now := time.Now()
	pf := buildPubFile(t, s, now)
	if err := verifier.VerifyPublicationsFile(pf.parsed, trustFor(t, s0, s0.Constraint(), now)); err != nil {
		t.Fatalf("publications file by the renewed publisher: %v", err)
	}
	if _, err := LoadTLSKeyPair(filepath.Join(dir, TLSCertFile), filepath.Join(dir, TLSKeyFile)); err != nil {
		t.Fatalf("rotated TLS pair: %v", err)
	}
}

func TestRotateRefuses(t *testing.T) {
	_, dir := initIn(t, InitOptions{})
	other, otherDir := otherSet(t)

	// Without the root key nothing can be issued.
	offline := filepath.Join(t.TempDir(), "root.key")
	if err := os.Rename(filepath.Join(dir, RootKeyFile), offline); err != nil {
		t.Fatal(err)
	}
	if _, err := Rotate(dir, RotateOptions{Calendar: true}); err == nil || !strings.Contains(err.Error(), "root key") {
		t.Fatalf("without the root key: %v", err)
	}
	if _, err := Rotate(dir, RotateOptions{Calendar: true, RootKey: filepath.Join(otherDir, RootKeyFile)}); err == nil || !strings.Contains(err.Error(), "does not belong") {
		t.Fatalf("another root's key: %v", err)
	}
	// The root key kept elsewhere (a replicated calendar's DIR/ca) works.
	if _, err := Rotate(dir, RotateOptions{Calendar: true, RootKey: offline}); err != nil {
		t.Fatal(err)
	}

	// A retired-calendar.pem that is not ours, or lost its header, is refused.
	retired := filepath.Join(dir, RetiredCalendarFile)
	b, err := os.ReadFile(retired)
	if err != nil {
		t.Fatal(err)
	}
	cur := sha256.Sum256(mustLoad(t, dir).Calendar.Raw)
	for name, tc := range map[string]struct {
		content []byte
		want    string
	}{
		"no header":    {bytes.Replace(b, []byte(ReplacesHeader), []byte("X-Other"), 1), "is not preceded by a line"},
		"other root":   {retiredPEM(other.Calendar, []byte("y")), "belongs to another PKI"},
		"current cert": {append(bytes.Clone(b), retiredPEM(mustLoad(t, dir).Calendar, []byte("x"))...), "a key still in use cannot be retired"},
		"trailing":     {append(bytes.Clone(b), "junk"...), "not a PEM block"},
		"current id":   {regexp.MustCompile(ReplacesHeader+`: [0-9a-f]+`).ReplaceAll(b, []byte(ReplacesHeader+": "+hex.EncodeToString(cur[:]))), "verifiers could not tell them apart"},
	} {
		content := tc.content
		t.Run(name, func(t *testing.T) {
			if err := os.WriteFile(retired, content, CertMode); err != nil {
				t.Fatal(err)
			}
			_, err := Load(dir)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Load = %v, want an error saying %q", err, tc.want)
			}
		})
	}
}

// TestRotateMember rotates one member of a replicated calendar with the
// root key kept in DIR/ca: its members.pem then lists its new
// certificate, and a member given the rotated member's members.pem and
// retired-calendar.pem publishes the same certificates. A member given
// the retired certificates but an old members.pem is refused: it would
// carry two certificates under one id.
func TestRotateMember(t *testing.T) {
	root := t.TempDir()
	sets, err := InitMembers(root, 2, InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keys := func(i int) string { return filepath.Join(MemberDataDir(root, i), "keys") }
	res, err := Rotate(keys(2), RotateOptions{Calendar: true, RootKey: filepath.Join(root, CADir, RootKeyFile)})
	if err != nil {
		t.Fatal(err)
	}
	s2 := res.Set
	if s2.Calendar.Equal(sets[1].Calendar) || len(s2.Retired) != 1 || !bytes.Equal(s2.Retired[0].ID, sets[1].CalendarCertID()) {
		t.Fatal("member 2's calendar key was not rotated")
	}
	if len(s2.Members) != 1 || !s2.Members[0].Equal(sets[0].Calendar) {
		t.Fatalf("member 2's members: %d, want member 1's certificate only (its own new one is the set's)", len(s2.Members))
	}

	// Member 1 with the retired certificates but its old members.pem.
	copyFile(t, filepath.Join(keys(2), RetiredCalendarFile), filepath.Join(keys(1), RetiredCalendarFile))
	if _, err := Load(keys(1)); err == nil || !strings.Contains(err.Error(), "verifiers could not tell them apart") {
		t.Fatalf("member 1 with an old members.pem: %v", err)
	}
	if err := os.Remove(filepath.Join(keys(1), MembersFile)); err != nil {
		t.Fatal(err)
	}
	copyFile(t, filepath.Join(keys(2), MembersFile), filepath.Join(keys(1), MembersFile))
	s1, err := Load(keys(1))
	if err != nil {
		t.Fatal(err)
	}
	ids := func(s *Set) map[string]string {
		m := map[string]string{}
		for _, r := range s.CertificateRecords() {
			sum := sha256.Sum256(r.DER)
			m[hex.EncodeToString(r.ID)] = hex.EncodeToString(sum[:])
		}
		return m
	}
	a, b := ids(s1), ids(s2)
	if len(a) != 3 || len(b) != 3 {
		t.Fatalf("records: member 1 %d, member 2 %d, want 3 each", len(a), len(b))
	}
	for id, d := range a {
		if b[id] != d {
			t.Errorf("certificate %s differs between the members", id)
		}
	}
}

// A key directory that does not load is not rotated: nothing is staged.
func TestRotateRefusesBrokenDir(t *testing.T) {
	s, src := sharedSet(t)
	dir := copyDir(t, src)
	other, _ := otherSet(t)
	writeCert(t, filepath.Join(dir, PublisherCertFile), other.Publisher)
	_, err := Rotate(dir, RotateOptions{Calendar: true})
	if err == nil || !strings.Contains(err.Error(), "does not load as it is") {
		t.Fatalf("Rotate = %v", err)
	}
	if present(filepath.Join(dir, "calendar-next.key")) || present(filepath.Join(dir, RetiredCalendarFile)) {
		t.Fatal("files written for a broken directory")
	}
	if got := mustReadCert(t, filepath.Join(dir, CalendarCertFile)); !got.Equal(s.Calendar) {
		t.Fatal("calendar certificate replaced")
	}
}

func mustReadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	cs, err := readCertFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return cs[0]
}

// A new root (Init with Force) drops the retired certificates, which the
// new root did not issue and which would keep the directory from loading.
func TestInitForceAfterRotation(t *testing.T) {
	_, dir := initIn(t, InitOptions{})
	if _, err := Rotate(dir, RotateOptions{Calendar: true}); err != nil {
		t.Fatal(err)
	}
	retired, err := os.ReadFile(filepath.Join(dir, RetiredCalendarFile))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Init(dir, InitOptions{}); err == nil || !strings.Contains(err.Error(), RetiredCalendarFile) {
		t.Fatalf("Init without force over a rotated directory: %v", err)
	}
	if _, err := Init(dir, InitOptions{Force: true}); err != nil {
		t.Fatal(err)
	}
	s := mustLoad(t, dir)
	if len(s.Retired) != 0 || present(filepath.Join(dir, RetiredCalendarFile)) {
		t.Fatal("retired certificates of the old root kept")
	}

	// Left alone with the old root's retired file, a first start refuses
	// rather than make a PKI that cannot load.
	fresh := filepath.Join(t.TempDir(), "keys")
	if err := os.MkdirAll(fresh, DirMode); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(fresh, RetiredCalendarFile), retired, CertMode); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadOrInit(fresh, InitOptions{}); err == nil || !strings.Contains(err.Error(), RetiredCalendarFile) {
		t.Fatalf("LoadOrInit beside an old retired file: %v", err)
	}
}
