package hsm

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseURI(t *testing.T) {
	u, err := ParseURI("pkcs11:token=Tempel%20HSM;object=tempel-calendar;type=private?module-path=/usr/lib/softhsm/libsofthsm2.so&pin-value=s3cr%2Ft")
	if err != nil {
		t.Fatal(err)
	}
	if u.Token != "Tempel HSM" || u.Object != "tempel-calendar" || u.ModulePath != "/usr/lib/softhsm/libsofthsm2.so" || u.PINValue != "s3cr/t" {
		t.Fatalf("parsed %+v", u)
	}
	if s := u.String(); strings.Contains(s, "s3cr") || !strings.Contains(s, "pin-value=***") || !strings.HasPrefix(s, "pkcs11:token=Tempel%20HSM;object=tempel-calendar") {
		t.Fatalf("String() = %q", s)
	}
	u, err = ParseURI("PKCS11:serial=0123;id=%01%02?pin-source=file:/etc/tempel/pin")
	if err != nil {
		t.Fatal(err)
	}
	if u.Serial != "0123" || string(u.ID) != "\x01\x02" || u.PINSource != "/etc/tempel/pin" {
		t.Fatalf("parsed %+v", u)
	}
}

func TestParseURIRefuses(t *testing.T) {
	for _, tc := range []struct{ uri, want string }{
		{"file:/x", "not a PKCS#11 URI"},
		{"pkcs11:object=k", "names no token"},
		{"pkcs11:token=t", "names no key"},
		{"pkcs11:token=t;serial=1;object=k", "by label and by serial"},
		{"pkcs11:token=t;object=k;type=public", "type=private"},
		{"pkcs11:token=t;object=k;model=SoftHSM", `"model" is not supported`},
		{"pkcs11:token=t;token=u;object=k", "given twice"},
		{"pkcs11:token=t;object=k?module-name=softhsm2", `"module-name" is not supported`},
		{"pkcs11:token=t;object=k?pin-value=abc&pin-source=/f", "both pin-value and pin-source"},
		{"pkcs11:token=t;object=k?pin-value=ab%zzsecret", "not correctly percent-encoded"},
		{"pkcs11:token=t;object", "not NAME=VALUE"},
		{"pkcs11:" + strings.Repeat("a", maxURI), "longer than"},
	} {
		_, err := ParseURI(tc.uri)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("ParseURI(%q) = %v, want an error with %q", tc.uri, err, tc.want)
		}
		if err != nil && (strings.Contains(err.Error(), "secret") || strings.Contains(err.Error(), "abc")) {
			t.Errorf("ParseURI(%q): error %q quotes the PIN", tc.uri, err)
		}
	}
}

func TestReadPINFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "pin")
	if err := os.WriteFile(p, []byte("1234\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if pin, err := ReadPINFile(p); err != nil || pin != "1234" {
		t.Fatalf("ReadPINFile = %q, %v", pin, err)
	}
	if err := os.Chmod(p, 0o640); err != nil {
		t.Fatal(err)
	}
	_, err := ReadPINFile(p)
	if err == nil || !strings.Contains(err.Error(), "chmod 600") || strings.Contains(err.Error(), "1234") {
		t.Fatalf("ReadPINFile of a 0640 file: %v", err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPINFile(empty); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Fatalf("ReadPINFile of an empty file: %v", err)
	}
}

func TestResolveNeedsModuleAndPIN(t *testing.T) {
	u, err := ParseURI("pkcs11:token=t;object=k")
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := New(Config{PIN: "9999"}).resolve(u); err == nil || !strings.Contains(err.Error(), "no PKCS#11 module configured") {
		t.Fatalf("no module: %v", err)
	}
	missing := filepath.Join(t.TempDir(), "libnothere.so")
	_, _, err = New(Config{Module: missing, PIN: "9999"}).resolve(u)
	if err == nil || !strings.Contains(err.Error(), "libnothere.so") || strings.Contains(err.Error(), "9999") {
		t.Fatalf("missing module: %v", err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := New(Config{Module: self}).resolve(u); err == nil || !strings.Contains(err.Error(), "no PIN") {
		t.Fatalf("no PIN: %v", err)
	}
}
