package tsaclients

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// openssl ts -query asks, Go posts, openssl ts -verify accepts the token
// for the document and refuses it for a changed one; the token extended
// to a publication still verifies with openssl (the KSI signature is
// outside what the TSA key signed).
func TestOpenSSL(t *testing.T) {
	s := tsaServer(t)
	openssl := need(t, "openssl", "Debian package openssl")
	dir := t.TempDir()
	doc := filepath.Join(dir, "doc.txt")
	write(t, doc, []byte("a land register entry\n"))
	tsq := filepath.Join(dir, "q.tsq")
	run(t, dir, openssl, "ts", "-query", "-data", doc, "-sha256", "-cert", "-out", tsq)
	tsr := filepath.Join(dir, "r.tsr")
	write(t, tsr, s.post(t, read(t, tsq)))
	run(t, dir, openssl, "ts", "-verify", "-in", tsr, "-data", doc, "-CAfile", s.rootPEM())
	changed := filepath.Join(dir, "changed.txt")
	write(t, changed, []byte("a land register entry.\n"))
	if out, err := exec.Command(openssl, "ts", "-verify", "-in", tsr, "-data", changed, "-CAfile", s.rootPEM()).CombinedOutput(); err == nil {
		t.Fatalf("openssl ts -verify accepted the token for a changed document:\n%s", out)
	}

	tok := checkToken(t, s, read(t, tsr))
	ext := filepath.Join(dir, "extended.tsr")
	write(t, ext, keyless(t, s, tok))
	run(t, dir, openssl, "ts", "-verify", "-in", ext, "-data", doc, "-CAfile", s.rootPEM())
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
