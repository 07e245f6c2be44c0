package calendar

import (
	"crypto/x509"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// TestPublisher publishes at UTC-aligned period boundaries, rebuilds and
// re-signs the file each time, and finds it all again after a restart.
func TestPublisher(t *testing.T) {
	dir := t.TempDir()
	keys, err := pki.Init(filepath.Join(dir, "keys"), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := openTest(t, filepath.Join(dir, "cal"))
	now := time.Unix(1_800_000_000, 0)
	cfg := PublisherConfig{Store: st, Signer: keys, Period: 10 * time.Second, RepositoryURI: "http://tempel.test/publications.bin",
		Now: func() time.Time { return now }, Logger: discardLogger()}
	p, err := NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Before any publication the file already carries the certificate.
	f0, etag0 := p.File()
	pf0, err := ksi.ParsePublicationsFile(f0)
	if err != nil || len(pf0.Certificates) != 1 || len(pf0.Publications) != 0 {
		t.Fatalf("initial file: %v, %d certs, %d pubs", err, len(pf0.Certificates), len(pf0.Publications))
	}
	leaves := make([]ksi.Imprint, 25) // seconds …995 to …019
	for i := range leaves {
		leaves[i] = leafFor(uint64(i))
	}
	if _, err := st.AppendRange(1_799_999_995, leaves[:12], true); err != nil { // up to …006
		t.Fatal(err)
	}
	rec, err := p.PublishDue()
	if err != nil || rec == nil || rec.Data.Time != 1_800_000_000 {
		t.Fatalf("first publication: %v %+v", err, rec)
	}
	if again, _ := p.PublishDue(); again != nil {
		t.Fatal("published the same boundary twice")
	}
	if _, err := st.AppendRange(1_800_000_007, leaves[12:], true); err != nil { // up to …019
		t.Fatal(err)
	}
	rec2, err := p.PublishDue()
	if err != nil || rec2 == nil || rec2.Data.Time != 1_800_000_010 {
		t.Fatalf("second publication: %v %+v", err, rec2)
	}
	file, etag := p.File()
	if etag == etag0 || etag == "" {
		t.Fatalf("ETag did not change: %q", etag)
	}
	pf, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(pf.Publications) != 2 || pf.Header.RepositoryURI != cfg.RepositoryURI {
		t.Fatalf("file has %d publications, repository %q", len(pf.Publications), pf.Header.RepositoryURI)
	}
	for _, r := range pf.Publications {
		root, err := st.Root(r.Data.Time)
		if err != nil || !root.Equal(r.Data.Hash) {
			t.Fatalf("publication %d is not the calendar root: %v", r.Data.Time, err)
		}
	}
	pool := x509.NewCertPool()
	pool.AddCert(keys.Root)
	c, _ := verifier.ParseConstraint(keys.Constraint())
	if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: pool, Constraints: []verifier.Constraint{c}, Time: time.Now()}); err != nil {
		t.Fatalf("publications file does not verify: %v", err)
	}
	if got := pf.CertificateByID(keys.CalendarCertID()); got == nil {
		t.Fatal("calendar certificate missing from the file")
	}
	st.Close()

	st2 := openTest(t, filepath.Join(dir, "cal"))
	defer st2.Close()
	cfg.Store = st2
	p2, err := NewPublisher(cfg)
	if err != nil {
		t.Fatal(err)
	}
	f2, etag2 := p2.File()
	if etag2 != etag || len(f2) != len(file) || len(p2.Publications()) != 2 || p2.Latest().Data.Time != 1_800_000_010 {
		t.Fatalf("after restart: %d publications, ETag %q (was %q)", len(p2.Publications()), etag2, etag)
	}
}
