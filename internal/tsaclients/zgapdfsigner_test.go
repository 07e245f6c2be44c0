package tsaclients

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/tempel-ksi/tempel/pdfts"
)

// zgapdfsigner adds a PDF document time-stamp from the front door
// (testdata/zgapdfsigner_client.mjs); the token taken from the
// signature's /Contents is accepted by openssl ts -verify -digest over
// the PDF's signed byte range, and refused for another digest. It
// verifies keylessly.
func TestZgapdfsigner(t *testing.T) {
	s := tsaServer(t)
	openssl := need(t, "openssl", "Debian package openssl")
	dir := t.TempDir()
	pdfPath := filepath.Join(dir, "signed.pdf")
	out := runNode(t, "zgapdfsigner_client.mjs", s.tsaURL(), pdfPath)
	t.Logf("zgapdfsigner: %s", out)
	pdf := read(t, pdfPath)
	if !bytes.Contains(pdf, []byte("/SubFilter /ETSI.RFC3161")) {
		t.Fatal("the PDF has no /ETSI.RFC3161 document time-stamp")
	}
	token, digest, err := documentTimeStamp(pdf)
	if err != nil {
		t.Fatal(err)
	}
	tst := filepath.Join(dir, "token.tst")
	write(t, tst, token)
	run(t, dir, openssl, "ts", "-verify", "-digest", hex.EncodeToString(digest), "-in", tst, "-token_in", "-CAfile", s.rootPEM())
	other := sha256.Sum256(append(pdf, '\n'))
	if out, err := exec.Command(openssl, "ts", "-verify", "-digest", hex.EncodeToString(other[:]), "-in", tst, "-token_in", "-CAfile", s.rootPEM()).CombinedOutput(); err == nil {
		t.Fatalf("openssl ts -verify accepted the token for another digest:\n%s", out)
	}
	tok := checkToken(t, s, token)
	if !bytes.Equal(tok.Digest, digest) {
		t.Fatalf("the token's imprint %x is not the digest of the signed byte range %x", tok.Digest, digest)
	}
	// tempel verify finds the time-stamp in the PDF and checks both
	// layers against the bytes it covers; a changed page fails.
	out = run(t, dir, tempelBin, "verify", "--tsa-root", s.rootPEM(), "--pubfile", s.url("/publications.bin"),
		"--trust-root", s.rootPEM(), "--cnstr", "E=publications@tempel.test", pdfPath)
	if !bytes.HasPrefix(out, []byte("OK")) || !bytes.Contains(out, []byte("verified with the certificate chain to --tsa-root")) {
		t.Fatalf("tempel verify of the PDF:\n%s", out)
	}
	changed := bytes.Replace(pdf, []byte("/MediaBox"), []byte("/MediaBoX"), 1)
	if bytes.Equal(changed, pdf) {
		t.Fatal("the test PDF has no /MediaBox to change")
	}
	changedPath := filepath.Join(dir, "changed.pdf")
	write(t, changedPath, changed)
	cmd := exec.Command(tempelBin, "verify", "--tsa-root", s.rootPEM(), "--policy", "internal", changedPath)
	if out, err := cmd.CombinedOutput(); cmd.ProcessState.ExitCode() != 1 || !bytes.Contains(out, []byte("FAILED")) {
		t.Fatalf("tempel verify of a changed PDF: %v (exit %d), want FAILED (exit 1):\n%s", err, cmd.ProcessState.ExitCode(), out)
	}
	keyless(t, s, tok)
}

// documentTimeStamp finds a PDF's (only) signature with pdfts: it must
// be a document time-stamp covering the whole file but its /Contents; it
// returns the token and the SHA-256 of the covered bytes.
func documentTimeStamp(pdf []byte) (token, digest []byte, err error) {
	stamps, err := pdfts.Find(pdf)
	if err != nil {
		return nil, nil, err
	}
	if len(stamps) != 1 {
		return nil, nil, fmt.Errorf("%d signatures in the PDF, want 1", len(stamps))
	}
	s := stamps[0]
	if !s.DocTimeStamp || !s.WholeFile {
		return nil, nil, fmt.Errorf("the signature is not a document time-stamp over the whole file: %+v", s.ByteRange)
	}
	return s.Contents, s.Hash(pdf, sha256.New()), nil
}
