//go:build cgo

package hsm_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/hsm"
	"github.com/tempel-ksi/tempel/internal/hsm/softhsmtest"
)

// tokenDir is the one token directory in a SoftHSM2 store.
func tokenDir(t *testing.T, tok *softhsmtest.Token) string {
	t.Helper()
	dir := filepath.Join(filepath.Dir(tok.Conf), "tokens")
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, e := range ents {
		if e.IsDir() {
			found = append(found, filepath.Join(dir, e.Name()))
		}
	}
	if len(found) != 1 {
		t.Fatalf("%s holds %d tokens, want 1", dir, len(found))
	}
	return found[0]
}

func move(t *testing.T, from, to string) {
	t.Helper()
	if err := os.Rename(from, to); err != nil {
		t.Fatal(err)
	}
}

// A token that goes away while a key is in use makes signing fail with
// the reason, never with another key; when the same token comes back the
// key signs again without a restart, and a token that comes back with
// another key under the same label is refused.
func TestTokenGoneAndBack(t *testing.T) {
	tok := softhsmtest.New(t, "gone")
	const uri = "pkcs11:token=gone;object=cal"
	away := t.TempDir()

	// The same label in a second token, with another key: what a wrong
	// token put in place of the right one looks like.
	first := hsm.New(hsm.Config{Module: softhsmtest.Module, PIN: softhsmtest.PIN})
	if _, err := first.Generate(uri, 2048); err != nil {
		t.Fatal(err)
	}
	first.Close()
	right := filepath.Join(away, "right")
	move(t, tokenDir(t, tok), right)
	cmd := exec.Command("softhsm2-util", "--init-token", "--free", "--label", "gone", "--pin", softhsmtest.PIN, "--so-pin", softhsmtest.SOPIN)
	cmd.Env = tok.Env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("softhsm2-util: %v\n%s", err, out)
	}
	second := hsm.New(hsm.Config{Module: softhsmtest.Module, PIN: softhsmtest.PIN})
	if _, err := second.Generate(uri, 2048); err != nil {
		t.Fatal(err)
	}
	second.Close()
	wrong := filepath.Join(away, "wrong")
	live := tokenDir(t, tok)
	move(t, live, wrong)
	move(t, right, live)

	keys := hsm.New(hsm.Config{Module: softhsmtest.Module, PIN: softhsmtest.PIN, ReopenEvery: 50 * time.Millisecond})
	t.Cleanup(func() { keys.Close() })
	k, err := keys.Open(uri)
	if err != nil {
		t.Fatal(err)
	}
	pub := k.Public().(*rsa.PublicKey)
	digest := sha256.Sum256([]byte("calendar root"))
	sign := func() error {
		sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
		if err == nil {
			if verr := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); verr != nil {
				t.Fatalf("a signature not by the key opened: %v", verr)
			}
		}
		return err
	}
	if err := sign(); err != nil {
		t.Fatal(err)
	}

	// Gone: every try fails at once and says so.
	move(t, live, right)
	for range 3 {
		start := time.Now()
		err := sign()
		if err == nil || !strings.Contains(err.Error(), "hsm: sign with pkcs11:token=gone;object=cal;type=private") {
			t.Fatalf("sign with the token gone: %v", err)
		}
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("sign with the token gone took %s", d)
		}
		if strings.Contains(err.Error(), softhsmtest.PIN) {
			t.Fatalf("error quotes the PIN: %v", err)
		}
		time.Sleep(60 * time.Millisecond) // past ReopenEvery, so each try opens the token again
	}

	// Another token under the same label: refused.
	move(t, wrong, live)
	waitErr(t, sign, "now names another key than the one opened at start")
	move(t, live, wrong)

	// The right token back: signing works again.
	move(t, right, live)
	deadline := time.Now().Add(10 * time.Second)
	for err := sign(); err != nil; err = sign() {
		if time.Now().After(deadline) {
			t.Fatalf("the token is back, but signing still fails: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitErr calls f until it fails with an error containing want.
func waitErr(t *testing.T, f func() error, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := f()
		if err != nil && strings.Contains(err.Error(), want) {
			return
		}
		if err == nil {
			t.Fatalf("signed with the token in place; want an error with %q", want)
		}
		if time.Now().After(deadline) {
			t.Fatalf("last error %v; want one with %q", err, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
