// Package softhsmtest gives tests a fresh SoftHSM2 token of their own.
package softhsmtest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// Module is where Debian's softhsm2 package puts the PKCS#11 module.
const Module = "/usr/lib/softhsm/libsofthsm2.so"

// PIN and SOPIN are the PINs of every test token.
const (
	PIN   = "4711-test-pin"
	SOPIN = "so-0815-test-pin"
)

// Token is an initialized, empty token.
type Token struct {
	Label   string
	Conf    string // the SOFTHSM2_CONF file
	PINFile string // holds PIN, mode 0600
	Env     []string
}

// Available reports whether SoftHSM2 is installed; when it is not, it
// fails the test in CI (CI=true) and skips it elsewhere.
func Available(t testing.TB) {
	t.Helper()
	_, errM := os.Stat(Module)
	_, errU := exec.LookPath("softhsm2-util")
	if errM == nil && errU == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("softhsm2 is not installed (%s, softhsm2-util): .ci/run installs it", Module)
	}
	t.Skipf("softhsm2 is not installed (apt-get install softhsm2)")
}

// New makes a token store under a temporary directory, points
// SOFTHSM2_CONF at it for this test (so the test must not be parallel)
// and initializes a token labelled label with [PIN].
func New(t testing.TB, label string) *Token {
	t.Helper()
	Available(t)
	tok, err := Init(t.TempDir(), label)
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("SOFTHSM2_CONF", tok.Conf)
	return tok
}

// Init makes a token store in dir (its configuration, a tokens
// directory, a PIN file) and initializes a token labelled label with
// [PIN]. Commands given Token.Env use it.
func Init(dir, label string) (*Token, error) {
	tok := &Token{Label: label, Conf: filepath.Join(dir, "softhsm2.conf"), PINFile: filepath.Join(dir, "pin")}
	if err := os.MkdirAll(filepath.Join(dir, "tokens"), 0o700); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("directories.tokendir = %s\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n", filepath.Join(dir, "tokens"))
	if err := os.WriteFile(tok.Conf, []byte(conf), 0o600); err != nil {
		return nil, err
	}
	if err := os.WriteFile(tok.PINFile, []byte(PIN+"\n"), 0o600); err != nil {
		return nil, err
	}
	tok.Env = append(os.Environ(), "SOFTHSM2_CONF="+tok.Conf)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", label, "--pin", PIN, "--so-pin", SOPIN)
	cmd.Env = tok.Env
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("softhsm2-util --init-token: %v\n%s", err, out)
	}
	return tok, nil
}
