package calendar

import (
	"bytes"
	"crypto/x509"
	"path/filepath"
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
	keysDir := filepath.Join(dir, "keys")
	keys, err := pki.Init(keysDir, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := openTest(t, filepath.Join(dir, "cal"))
	now := time.Unix(1_800_000_000, 0)
	cfg := PublisherConfig{Store: st, Signer: keys, Period: 10 * time.Second, Now: func() time.Time { return now }, Logger: discardLogger()}
	p, err := NewPublisher(cfg)
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
	_, etag := p.File()
	st.Close()

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
