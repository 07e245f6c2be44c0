package calendar

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/internal/pki"
)

// A publisher restarted after a key rotation without the retired
// certificates refuses to start rather than serve a file that drops the
// old key's certificate; with them it starts, and a new PKI (another
// root) drops the old certificates on purpose.
func TestPublisherRefusesToDropCertificate(t *testing.T) {
	dir := t.TempDir()
	keysDir, cfg, _ := publishedBeforeRotation(t, dir)
	keys := cfg.Signer.(*pki.Set)
	calDir := filepath.Join(dir, "cal")
	if _, err := pki.Rotate(keysDir, pki.RotateOptions{Calendar: true}); err != nil {
		t.Fatal(err)
	}

	restart := func(s PublicationsSigner) error {
		t.Helper()
		st := openTest(t, calDir)
		defer st.Close()
		c := cfg
		c.Store, c.Signer = st, s
		_, err := NewPublisher(c)
		return err
	}
	// The operator's files without --retired-certs.
	forgot, err := pki.LoadFiles(pki.DirFiles(keysDir))
	if err != nil {
		t.Fatal(err)
	}
	err = restart(forgot)
	if want := fmt.Sprintf("carries calendar certificate %X (", keys.CalendarCertID()); err == nil || !strings.Contains(err.Error(), want) ||
		!strings.Contains(err.Error(), "--retired-certs") {
		t.Fatalf("restart without the retired certificate: %v, want an error naming %s", err, want)
	}
	withRetired, err := pki.Load(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := restart(withRetired); err != nil {
		t.Fatalf("restart with the retired certificate: %v", err)
	}
	// A new root: its files cannot carry the old root's certificates.
	fresh, err := pki.Init(keysDir, pki.InitOptions{Force: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := restart(fresh); err != nil {
		t.Fatalf("restart under a new root: %v", err)
	}
}
