package pki

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Retire re-issues a calendar certificate kept apart from its key
// directory (the key in a token) to end at the retirement, appends it
// under the old id, changes nothing when run again, and refuses a
// certificate of another root; a set that still signs with the retired
// key refuses the file.
func TestRetire(t *testing.T) {
	s0, dir := initIn(t, InitOptions{})
	retired := filepath.Join(t.TempDir(), "retired.pem")
	opts := RetireOptions{Cert: filepath.Join(dir, CalendarCertFile), RootCert: filepath.Join(dir, RootCertFile),
		RootKey: filepath.Join(dir, RootKeyFile), RetiredFile: retired, At: time.Now()}
	rc, err := Retire(opts)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(rc.ID, s0.CalendarCertID()) || !publicKeysEqual(rc.Cert.PublicKey, s0.Calendar.PublicKey) {
		t.Fatalf("retired id %X, want %X with the old key", rc.ID, s0.CalendarCertID())
	}
	if want := opts.At.UTC().Truncate(time.Second); !rc.Cert.NotAfter.Equal(want) {
		t.Fatalf("retired certificate ends %s, want %s", rc.Cert.NotAfter, want)
	}
	before, err := os.ReadFile(retired)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := readRetired(retired); err != nil || len(got) != 1 || !got[0].Cert.Equal(rc.Cert) {
		t.Fatalf("read back: %d certificates, %v", len(got), err)
	}

	// Again, even later: nothing changes.
	opts.At = opts.At.Add(time.Hour)
	if _, err := Retire(opts); !errors.Is(err, ErrAlreadyRetired) {
		t.Fatalf("second Retire: %v, want ErrAlreadyRetired", err)
	}
	if after, _ := os.ReadFile(retired); !bytes.Equal(after, before) {
		t.Fatal("a second Retire changed the file")
	}

	// The key still in use with its certificate retired: refused.
	files := DirFiles(dir)
	files.RetiredCerts = retired
	if _, err := LoadFiles(files); err == nil || !strings.Contains(err.Error(), "a key still in use cannot be retired") {
		t.Fatalf("LoadFiles with the current key retired: %v", err)
	}

	// A certificate of another root is not re-issued by this one.
	_, other := initIn(t, InitOptions{})
	opts.Cert = filepath.Join(other, CalendarCertFile)
	if _, err := Retire(opts); err == nil || !strings.Contains(err.Error(), "belongs to another PKI") {
		t.Fatalf("Retire of another root's certificate: %v", err)
	}
	if after, _ := os.ReadFile(retired); !bytes.Equal(after, before) {
		t.Fatal("a refused Retire changed the file")
	}
}
