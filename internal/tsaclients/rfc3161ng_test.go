package tsaclients

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// systemPython is Debian's python3, the one python3-rfc3161ng is
// installed for (a pyenv python3 earlier in PATH does not see it).
const systemPython = "/usr/bin/python3"

// python3-rfc3161ng asks for a token with a nonce (RSA TSA, the
// default), checks it against the TSA certificate, the document and the
// nonce, and refuses it for a changed document (testdata/rfc3161ng_client.py).
// The token verifies keylessly.
func TestRFC3161ng(t *testing.T) {
	s := tsaServer(t)
	if _, err := os.Stat(systemPython); err != nil {
		missing(t, systemPython+" is not installed (Debian package python3)")
	}
	if out, err := exec.Command(systemPython, "-c", "import rfc3161ng").CombinedOutput(); err != nil {
		missing(t, "python3-rfc3161ng is not installed (Debian package python3-rfc3161ng): "+string(out))
	}
	dir := t.TempDir()
	doc := filepath.Join(dir, "minutes.txt")
	write(t, doc, []byte("minutes of the general assembly\n"))
	tst := filepath.Join(dir, "token.tst")
	script, err := filepath.Abs(filepath.Join("testdata", "rfc3161ng_client.py"))
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, dir, systemPython, script, s.tsaURL(), s.tsaPEM(), doc, tst)
	t.Logf("rfc3161ng: %s", out)
	keyless(t, s, checkToken(t, s, read(t, tst)))
}
