package tsaclients

import (
	"bytes"
	"crypto/sha256"
	"encoding/asn1"
	"encoding/hex"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
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
	keyless(t, s, tok)
}

var byteRange = regexp.MustCompile(`/ByteRange\s*\[\s*(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s*\]`)

// documentTimeStamp finds a PDF's (only) signature: it returns the token
// in its /Contents and the SHA-256 of its byte range, which must cover
// the whole file but the /Contents string.
func documentTimeStamp(pdf []byte) (token, digest []byte, err error) {
	m := byteRange.FindSubmatch(pdf)
	if m == nil {
		return nil, nil, fmt.Errorf("no /ByteRange in the PDF")
	}
	var r [4]int
	for i := range r {
		if r[i], err = strconv.Atoi(string(m[i+1])); err != nil {
			return nil, nil, err
		}
	}
	a, b, c, d := r[0], r[1], r[2], r[3]
	if a != 0 || b < 0 || c <= b+1 || d < 0 || c+d != len(pdf) {
		return nil, nil, fmt.Errorf("/ByteRange %v does not cover the %d-byte file around one gap", r, len(pdf))
	}
	gap := pdf[b:c]
	if gap[0] != '<' || gap[len(gap)-1] != '>' {
		return nil, nil, fmt.Errorf("the /ByteRange gap is not a hex string")
	}
	raw, err := hex.DecodeString(string(gap[1 : len(gap)-1]))
	if err != nil {
		return nil, nil, fmt.Errorf("/Contents: %w", err)
	}
	// /Contents is padded with zeros after the DER.
	var v asn1.RawValue
	if _, err := asn1.Unmarshal(raw, &v); err != nil {
		return nil, nil, fmt.Errorf("/Contents: %w", err)
	}
	h := sha256.New()
	h.Write(pdf[a : a+b])
	h.Write(pdf[c : c+d])
	return v.FullBytes, h.Sum(nil), nil
}
