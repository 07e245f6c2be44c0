package calendar

import (
	"bytes"
	"context"
	"crypto/x509"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// TestPublisherAfterRotation restarts a publisher after a key rotation:
// the stored file is re-signed at once with the new and the retired
// calendar certificates, by the renewed publisher certificate, keeping
// its publications; verifiers' pins still hold.
func TestPublisherAfterRotation(t *testing.T) {
	dir := t.TempDir()
	keysDir, cfg, p := publishedBeforeRotation(t, dir)
	keys := cfg.Signer.(*pki.Set)
	_, etag := p.File()

	res, err := pki.Rotate(keysDir, pki.RotateOptions{Calendar: true, Publisher: true})
	if err != nil {
		t.Fatal(err)
	}
	st2 := openTest(t, filepath.Join(dir, "cal"))
	defer st2.Close()
	cfg.Store, cfg.Signer = st2, res.Set
	p2, err := NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	file, etag2 := p2.File()
	if etag2 == etag {
		t.Fatal("the stored file is served unchanged after the rotation")
	}
	pf, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(pf.Publications) != 1 || len(pf.Certificates) != 2 ||
		pf.CertificateByID(keys.CalendarCertID()) == nil || pf.CertificateByID(res.Set.CalendarCertID()) == nil {
		t.Fatalf("re-signed file: %d publications, %d certificates", len(pf.Publications), len(pf.Certificates))
	}
	p7, err := pkcs7.Parse(pf.Signature)
	if err != nil {
		t.Fatal(err)
	}
	if s := p7.GetOnlySigner(); s == nil || !s.Equal(res.Set.Publisher) || s.Equal(keys.Publisher) {
		t.Fatal("the file is not signed by the renewed publisher certificate")
	}
	pool := x509.NewCertPool()
	pool.AddCert(keys.Root)
	c, _ := verifier.ParseConstraint(keys.Constraint())
	if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: pool, Constraints: []verifier.Constraint{c}, Time: time.Now()}); err != nil {
		t.Fatalf("the old pins do not verify the re-signed file: %v", err)
	}
	if !bytes.Equal(pf.Publications[0].Raw, mustFirstPub(t, p).Raw) {
		t.Error("the publication changed")
	}
	if why := staleFile(file, res.Set); why != "" {
		t.Errorf("the re-signed file is stale: %s", why)
	}
}

func mustFirstPub(t *testing.T, p *Publisher) *ksi.PublicationRecord {
	t.Helper()
	pubs := p.Publications()
	if len(pubs) == 0 {
		t.Fatal("no publications")
	}
	return pubs[0]
}

// memberSigns has a calendar service with member keys s sign one request
// in the second at, and returns the request and its signature.
func memberSigns(t *testing.T, s *pki.Set, storeDir string, at time.Time) (signed, *ksi.Signature) {
	t.Helper()
	st := openTest(t, storeDir)
	t.Cleanup(func() { st.Close() })
	clock := &fakeClock{t: at.Add(200 * time.Millisecond)}
	svc, err := NewService(ServiceConfig{Store: st, Signer: s, Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res := submitMany(svc, 1, 0)
	waitPending(t, svc, 1)
	closeAt(t, svc, clock, at.Add(1060*time.Millisecond))
	return nextSigned(t, res)
}

// TestPublisherMembersAfterRotation: member 2 of a replicated calendar
// rotates its calendar key; once member 1 has member 2's members.pem and
// retired-calendar.pem, member 1's publications file verifies member 2's
// signatures made before and after, key-based, and carries the same
// certificates as member 2's.
func TestPublisherMembersAfterRotation(t *testing.T) {
	dir := t.TempDir()
	cluster := filepath.Join(dir, "cluster")
	sets, err := pki.InitMembers(cluster, 2, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	keys := func(i int) string { return filepath.Join(pki.MemberDataDir(cluster, i), "keys") }
	before := time.Now().Truncate(time.Second)
	r1, sig1 := memberSigns(t, sets[1], filepath.Join(dir, "cal2"), before)

	res, err := pki.Rotate(keys(2), pki.RotateOptions{Calendar: true, RootKey: filepath.Join(cluster, pki.CADir, pki.RootKeyFile)})
	if err != nil {
		t.Fatal(err)
	}
	r2, sig2 := memberSigns(t, res.Set, filepath.Join(dir, "cal2b"), before.Add(5*time.Second))
	if bytes.Equal(sig1.CalendarAuthRecord.SignatureData.CertificateID, sig2.CalendarAuthRecord.SignatureData.CertificateID) {
		t.Fatal("signed under the same certificate id before and after the rotation")
	}

	for _, name := range []string{pki.MembersFile, pki.RetiredCalendarFile} {
		b, err := os.ReadFile(filepath.Join(keys(2), name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(keys(1), name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	m1, err := pki.Load(keys(1))
	if err != nil {
		t.Fatal(err)
	}
	st1 := openTest(t, filepath.Join(dir, "cal1"))
	defer st1.Close()
	p, err := NewPublisher(PublisherConfig{Store: st1, Signer: m1, Period: 10 * time.Second, Now: time.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	file, _ := p.File()
	pf, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := certificateRecords(m1), certificateRecords(res.Set); !slices.EqualFunc(got, want, func(a, b ksi.CertificateRecord) bool {
		return bytes.Equal(a.ID, b.ID) && bytes.Equal(a.DER, b.DER)
	}) || len(got) != 3 {
		t.Fatalf("member 1 carries %d certificates, member 2 %d, or they differ", len(got), len(want))
	}
	for name, c := range map[string]struct {
		r   signed
		sig *ksi.Signature
	}{"before": {r1, sig1}, "after": {r2, sig2}} {
		rep := verifier.Verify(context.Background(), c.sig, verifier.KeyBased,
			verifier.Options{Document: c.r.hash, InputLevel: uint64(c.r.level), PublicationsFile: pf})
		if err := rep.Err(); err != nil {
			t.Errorf("member 2's signature from %s the rotation with member 1's file: %v", name, err)
		}
	}
}

// publishedBeforeRotation lays out a development PKI in dir/keys and a
// calendar in dir/cal with one publication, and closes the store so that
// a rotation may run; it returns the key directory, the publisher's
// configuration (its Store closed) and the publisher.
func publishedBeforeRotation(t *testing.T, dir string) (keysDir string, cfg PublisherConfig, p *Publisher) {
	t.Helper()
	keysDir = filepath.Join(dir, "keys")
	keys, err := pki.Init(keysDir, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := openTest(t, filepath.Join(dir, "cal"))
	now := time.Unix(1_800_000_000, 0)
	cfg = PublisherConfig{Store: st, Signer: keys, Period: 10 * time.Second, Now: func() time.Time { return now }, Logger: discardLogger()}
	p, err = NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	leaves := make([]ksi.Imprint, 12)
	for i := range leaves {
		leaves[i] = leafFor(uint64(i))
	}
	if _, err := st.AppendRange(1_799_999_995, leaves, true); err != nil {
		t.Fatal(err)
	}
	if rec, err := p.PublishDue(); err != nil || rec == nil {
		t.Fatalf("publication: %v", err)
	}
	st.Close()
	return keysDir, cfg, p
}
