package calendar

import (
	"bytes"
	"context"
	"crypto/x509"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// TestPublisherSingleCalendarFile: a calendar without members publishes
// exactly the file it did before members existed, with its one
// certificate.
func TestPublisherSingleCalendarFile(t *testing.T) {
	dir := t.TempDir()
	keys, err := pki.Init(filepath.Join(dir, "keys"), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := openTest(t, filepath.Join(dir, "cal"))
	defer st.Close()
	now := time.Unix(1_800_000_000, 0)
	cfg := PublisherConfig{Store: st, Signer: keys, Period: 10 * time.Second, RepositoryURI: "http://tempel.test/publications.bin",
		Now: func() time.Time { return now }, Logger: discardLogger()}
	p, err := NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.AppendRange(1_799_999_999, []ksi.Imprint{leafFor(0), leafFor(1), leafFor(2)}, true); err != nil {
		t.Fatal(err)
	}
	if rec, err := p.PublishDue(); err != nil || rec == nil {
		t.Fatalf("PublishDue: %v", err)
	}
	file, _ := p.File()
	pf, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	hdr := ksi.PublicationsFileHeader{Version: 1, CreationTime: uint64(now.Unix()), RepositoryURI: cfg.RepositoryURI}
	want, err := ksi.BuildPublicationsFileContent(hdr, []ksi.CertificateRecord{keys.CertificateRecord()}, p.Publications())
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(pf.SignedBytes(), want) {
		t.Fatalf("signed content differs from a file with the one calendar certificate (%d bytes, want %d)", len(pf.SignedBytes()), len(want))
	}
}

// TestPublisherMembers: member 1's publications file carries every
// member's calendar certificate, so a signature whose calendar root member
// 2 signed verifies key-based with it.
func TestPublisherMembers(t *testing.T) {
	dir := t.TempDir()
	sets, err := pki.InitMembers(filepath.Join(dir, "cluster"), 3, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Member 2 signs a root in a second of the certificates' lifetime.
	now := time.Now().Truncate(time.Second)
	st2 := openTest(t, filepath.Join(dir, "cal2"))
	defer st2.Close()
	clock := &fakeClock{t: now.Add(200 * time.Millisecond)}
	svc, err := NewService(ServiceConfig{Store: st2, Signer: sets[1], Now: clock.Now, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	res := submitMany(svc, 1, 0)
	waitPending(t, svc, 1)
	closeAt(t, svc, clock, now.Add(1060*time.Millisecond))
	r, sig := nextSigned(t, res)
	if !bytes.Equal(sig.CalendarAuthRecord.SignatureData.CertificateID, sets[1].CalendarCertID()) {
		t.Fatalf("signed under certificate %X, want member 2's", sig.CalendarAuthRecord.SignatureData.CertificateID)
	}

	st1 := openTest(t, filepath.Join(dir, "cal1"))
	defer st1.Close()
	p, err := NewPublisher(PublisherConfig{Store: st1, Signer: sets[0], Period: 10 * time.Second,
		RepositoryURI: "http://tempel.test/publications.bin", Now: func() time.Time { return now }, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	file, _ := p.File()
	pf, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(pf.Certificates) != 3 {
		t.Fatalf("member 1's file has %d certificates, want 3", len(pf.Certificates))
	}
	// Every member lists them in one order, by certificate id.
	for i, s := range sets {
		j := slices.IndexFunc(pf.Certificates, func(c ksi.CertificateRecord) bool { return bytes.Equal(c.ID, s.CalendarCertID()) })
		if j < 0 || !bytes.Equal(pf.Certificates[j].DER, s.Calendar.Raw) {
			t.Errorf("member %d's certificate is not in the file", i+1)
		}
	}
	if !slices.IsSortedFunc(pf.Certificates, func(a, b ksi.CertificateRecord) int { return bytes.Compare(a.ID, b.ID) }) {
		t.Error("the certificates are not in the members' one order (by id)")
	}
	// Verifiers pin one root and one constraint for the whole cluster.
	pool := x509.NewCertPool()
	pool.AddCert(sets[2].Root)
	c, err := verifier.ParseConstraint(sets[2].Constraint())
	if err != nil {
		t.Fatal(err)
	}
	if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: pool, Constraints: []verifier.Constraint{c}, Time: time.Now()}); err != nil {
		t.Fatalf("member 1's publications file does not verify: %v", err)
	}
	rep := verifier.Verify(context.Background(), sig, verifier.KeyBased,
		verifier.Options{Document: r.hash, InputLevel: uint64(r.level), PublicationsFile: pf})
	if err := rep.Err(); err != nil {
		t.Fatalf("member 2's signature with member 1's file: %v (rules %+v)", err, rep.Rules)
	}
}
