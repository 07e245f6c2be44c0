package tlv_test

import (
	"bytes"
	"testing"

	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// CutKnown reads back exactly what AppendKnownHeader writes, on both
// sides of the TLV8 limits, and nothing else: another type, a flag, the
// longer header where the shorter fits, a short value.
func TestCutKnownReadsAppendKnownHeader(t *testing.T) {
	for _, typ := range []uint16{0, 0x05, 0x1F, 0x20, 0x800, tlv.MaxType} {
		for _, n := range []int{0, 1, 0xFF, 0x100, tlv.MaxValueLen} {
			value := bytes.Repeat([]byte{0xA5}, n)
			b := append(tlv.AppendKnownHeader(nil, typ, n), value...)
			b = append(b, 0x01, 0x02)
			v, rest, ok := tlv.CutKnown(b, typ)
			if !ok || !bytes.Equal(v, value) || !bytes.Equal(rest, []byte{0x01, 0x02}) {
				t.Fatalf("type %#x, %d bytes: ok %v, value of %d bytes, rest %x", typ, n, ok, len(v), rest)
			}
			if _, _, ok := tlv.CutKnown(b, typ^1); ok {
				t.Errorf("type %#x, %d bytes: read as type %#x", typ, n, typ^1)
			}
			if _, _, ok := tlv.CutKnown(b[:len(b)-3], typ); ok {
				t.Errorf("type %#x, %d bytes: a truncated value is read", typ, n)
			}
			for _, flag := range []byte{0x40, 0x20} {
				bad := append([]byte(nil), b...)
				bad[0] |= flag
				if _, _, ok := tlv.CutKnown(bad, typ); ok {
					t.Errorf("type %#x, %d bytes: read with flag %#x", typ, n, flag)
				}
			}
			long, err := tlv.AppendHeader(nil, typ, false, false, n)
			if err != nil {
				t.Fatal(err)
			}
			if len(long) == 2 {
				// The TLV16 form of an element that fits TLV8.
				long = []byte{0x80 | byte(typ>>8), byte(typ), byte(n >> 8), byte(n)}
				if _, _, ok := tlv.CutKnown(append(long, value...), typ); ok {
					t.Errorf("type %#x, %d bytes: the longer header is read", typ, n)
				}
			}
		}
	}
	if _, _, ok := tlv.CutKnown(nil, 0x05); ok {
		t.Error("empty input read")
	}
}
