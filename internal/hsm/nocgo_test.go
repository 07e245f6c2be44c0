//go:build !cgo

package hsm

import (
	"errors"
	"strings"
	"testing"
)

func TestNoCgoRefuses(t *testing.T) {
	k := New(Config{Module: "/usr/lib/softhsm/libsofthsm2.so", PIN: "1234"})
	if _, err := k.Open("pkcs11:token=t;object=k"); !errors.Is(err, ErrNoCgo) {
		t.Fatalf("Open: %v, want ErrNoCgo", err)
	}
	if _, err := k.Generate("pkcs11:token=t;object=k", 2048); !errors.Is(err, ErrNoCgo) {
		t.Fatalf("Generate: %v, want ErrNoCgo", err)
	}
	if _, err := k.Open("pkcs11:object=k"); err == nil || !strings.Contains(err.Error(), "names no token") {
		t.Fatalf("Open of a bad URI: %v, want the URI's error first", err)
	}
	if Supported {
		t.Fatal("Supported without cgo")
	}
}
