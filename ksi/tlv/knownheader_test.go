package tlv_test

import (
	"bytes"
	"testing"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// AppendKnownHeader writes what AppendHeader writes for a critical,
// not forwarded element, on both sides of the TLV8 limits.
func TestAppendKnownHeaderMatchesAppendHeader(t *testing.T) {
	for _, typ := range []uint16{0, 0x05, 0x1F, 0x20, 0x800, tlv.MaxType} {
		for _, n := range []int{0, 1, 0xFF, 0x100, tlv.MaxValueLen} {
			want, err := tlv.AppendHeader([]byte{9}, typ, false, false, n)
			if err != nil {
				t.Fatal(err)
			}
			if got := tlv.AppendKnownHeader([]byte{9}, typ, n); !bytes.Equal(got, want) {
				t.Errorf("type %#x, %d bytes: %x, want %x", typ, n, got, want)
			}
		}
	}
}
