//go:build cgo

package hsm_test

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/internal/hsm"
	"github.com/tempel-ksi/tempel/internal/hsm/softhsmtest"
)

func TestTokenKeyGenerateSignProtect(t *testing.T) {
	tok := softhsmtest.New(t, "hsmtest")
	keys := hsm.New(hsm.Config{Module: softhsmtest.Module, PIN: softhsmtest.PIN})
	t.Cleanup(func() { keys.Close() })
	uri := "pkcs11:token=hsmtest;object=tempel-calendar"
	gen, err := keys.Generate(uri, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keys.Generate(uri, 2048); err == nil || !strings.Contains(err.Error(), "already holds a key") {
		t.Fatalf("second Generate with the same label: %v", err)
	}

	// A second, fresh Keys finds it by URI and signs with it.
	keys2 := hsm.New(hsm.Config{Module: softhsmtest.Module})
	t.Cleanup(func() { keys2.Close() })
	k, err := keys2.Open(uri + "?pin-source=" + tok.PINFile)
	if err != nil {
		t.Fatal(err)
	}
	pub, ok := k.Public().(*rsa.PublicKey)
	if !ok || pub.N.BitLen() != 2048 || !pub.Equal(gen.Public()) {
		t.Fatalf("opened key's public half %T does not match the generated one", k.Public())
	}
	digest := sha256.Sum256([]byte("calendar root"))
	sig, err := k.Sign(rand.Reader, digest[:], crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := rsa.VerifyPKCS1v15(pub, crypto.SHA256, digest[:], sig); err != nil {
		t.Fatalf("token signature does not verify: %v", err)
	}

	p, err := hsm.KeyProtection(k)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Sensitive || p.Extractable || !p.NeverExtractable || !p.AlwaysSensitive || !p.ExportRefused {
		t.Fatalf("key protection %+v: want sensitive, not extractable, export refused", p)
	}
}

func TestTokenErrorsHidePIN(t *testing.T) {
	softhsmtest.New(t, "errs")
	keys := hsm.New(hsm.Config{Module: softhsmtest.Module, PIN: softhsmtest.PIN})
	t.Cleanup(func() { keys.Close() })
	if _, err := keys.Generate("pkcs11:token=errs;object=k1", 2048); err != nil {
		t.Fatal(err)
	}
	// PKCS#11 logs in once per process: while a session is logged in,
	// another login is not checked. Each case below opens the token alone.
	if err := keys.Close(); err != nil {
		t.Fatal(err)
	}
	const wrong = "9876-wrong-pin"
	notLib := filepath.Join(t.TempDir(), "libnot.so")
	if err := os.WriteFile(notLib, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		cfg  hsm.Config
		uri  string
		want string
	}{
		{"wrong PIN", hsm.Config{Module: softhsmtest.Module, PIN: wrong}, "pkcs11:token=errs;object=k1", "wrong PIN"},
		{"wrong PIN in URI", hsm.Config{Module: softhsmtest.Module}, "pkcs11:token=errs;object=k1?pin-value=" + wrong, "wrong PIN"},
		{"missing module", hsm.Config{Module: "/nonexistent/libpkcs11.so", PIN: wrong}, "pkcs11:token=errs;object=k1", "/nonexistent/libpkcs11.so"},
		{"not a module", hsm.Config{Module: notLib, PIN: wrong}, "pkcs11:token=errs;object=k1", "load PKCS#11 module " + notLib},
		{"missing token", hsm.Config{Module: softhsmtest.Module, PIN: wrong}, "pkcs11:token=nosuch;object=k1", `no token "nosuch"`},
		{"missing object", hsm.Config{Module: softhsmtest.Module, PIN: softhsmtest.PIN}, "pkcs11:token=errs;object=nosuch", "no key pkcs11:token=errs;object=nosuch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := hsm.New(tc.cfg)
			defer k.Close()
			_, err := k.Open(tc.uri)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Open: %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), wrong) || strings.Contains(err.Error(), softhsmtest.PIN) {
				t.Fatalf("error %q quotes a PIN", err)
			}
		})
	}
}
