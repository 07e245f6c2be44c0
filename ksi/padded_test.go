package ksi

import (
	"bytes"
	"crypto/sha256"
	"testing"
)

// The padded SHA-256 path reads the standard library's encoded hash state.
// If a Go release changes that encoding, the path turns itself off (and
// verification slows down): this test makes such a release visible.
func TestPaddedSHA256Works(t *testing.T) {
	if !paddedSHA256Works() {
		t.Fatal("padded SHA-256 disagrees with sha256.Sum256; the fast path is off")
	}
}

// Every step size the fast path takes, and the sizes around its limit,
// give the plain SHA-256 of x || y || tail.
func TestHasherStepMatchesSHA256(t *testing.T) {
	var h Hasher
	for nx := 0; nx <= 70; nx += 7 {
		for ny := 0; ny <= 140; ny++ {
			x := bytes.Repeat([]byte{byte(nx)}, nx)
			y := bytes.Repeat([]byte{byte(ny + 1)}, ny)
			got, err := h.step(SHA2_256, x, y, 0x2A)
			if err != nil {
				t.Fatal(err)
			}
			want := sha256.Sum256(append(append(append([]byte{}, x...), y...), 0x2A))
			if got.Alg() != SHA2_256 || !bytes.Equal(got.Digest(), want[:]) {
				t.Fatalf("step of %d+%d+1 bytes: got %x, want %x", nx, ny, got, want)
			}
		}
	}
}
