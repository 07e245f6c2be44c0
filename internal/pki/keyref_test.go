package pki

import (
	"crypto"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

func TestLoadFilesKeyURI(t *testing.T) {
	_, dir := sharedSet(t)
	f := DirFiles(dir)
	f.CalendarKey = "pkcs11:token=t;object=tempel-calendar"
	if _, err := LoadFiles(f); err == nil || !strings.Contains(err.Error(), "no PKCS#11 module is") {
		t.Fatalf("a pkcs11: key without an opener: %v", err)
	}
	// The opener is asked for the URI, and its error is passed on.
	var asked string
	f.OpenKey = func(uri string) (crypto.Signer, error) { asked = uri; return nil, errors.New("hsm: no such token") }
	if _, err := LoadFiles(f); err == nil || !strings.Contains(err.Error(), "hsm: no such token") || asked != f.CalendarKey {
		t.Fatalf("LoadFiles: %v (opener asked for %q)", err, asked)
	}
	// A PEM calendar key beside an opener still loads from its file.
	f.CalendarKey = DirFiles(dir).CalendarKey
	if _, err := LoadFiles(f); err != nil {
		t.Fatalf("file keys with an opener: %v", err)
	}
	if !IsKeyURI("PKCS11:token=x;object=y") || IsKeyURI("/etc/pkcs11:x") {
		t.Error("IsKeyURI")
	}
}

// flippingSigner signs with its key, then damages the signature, as a
// faulty token could.
type flippingSigner struct{ crypto.Signer }

func (f flippingSigner) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	sig, err := f.Signer.Sign(r, digest, opts)
	if err == nil {
		sig[len(sig)/2] ^= 1
	}
	return sig, err
}

func TestSignCalendarRootChecksTheKeysAnswer(t *testing.T) {
	s, _ := sharedSet(t)
	bad := *s
	bad.CalendarKey = flippingSigner{s.CalendarKey}
	pd := ksi.NewPublishedData(uint64(time.Now().Unix()), mustDigest(t, "calendar root"))
	if _, err := bad.SignCalendarRoot(pd.Raw); err == nil || !strings.Contains(err.Error(), "signature does not verify") {
		t.Fatalf("a damaged signature: %v", err)
	}
	if _, err := s.SignCalendarRoot(pd.Raw); err != nil {
		t.Fatal(err)
	}
}
