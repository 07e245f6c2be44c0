package tlv_test

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// unhex decodes hex written with optional spaces, for readable vectors.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

// refHeader is an independent encoder of the header a writer must pick
// (docs/design/formats.md#tlv): TLV16 when the type is above 0x1F or the value is
// longer than 255 bytes.
func refHeader(typ uint16, nc, fwd bool, n int) []byte {
	var f byte
	if nc {
		f |= 0x40
	}
	if fwd {
		f |= 0x20
	}
	if typ > 0x1F || n > 0xFF {
		return []byte{0x80 | f | byte(typ>>8), byte(typ), byte(n >> 8), byte(n)}
	}
	return []byte{f | byte(typ), byte(n)}
}

func TestReadHeader(t *testing.T) {
	long := bytes.Repeat([]byte{0xAB}, 256)
	tests := []struct {
		name string
		in   []byte
		want tlv.Element // Value and Raw are filled from in below
		hdr  int
		rest []byte
	}{
		{name: "tlv8", in: unhex(t, "01 02 AA BB"), want: tlv.Element{Type: 1}, hdr: 2},
		{name: "tlv8 empty value", in: unhex(t, "05 00"), want: tlv.Element{Type: 5}, hdr: 2},
		{name: "tlv8 N", in: unhex(t, "41 00"), want: tlv.Element{Type: 1, NonCritical: true}, hdr: 2},
		{name: "tlv8 F", in: unhex(t, "21 00"), want: tlv.Element{Type: 1, Forward: true}, hdr: 2},
		{name: "tlv8 N F type 0x1f", in: unhex(t, "7F 01 00"), want: tlv.Element{Type: 0x1F, NonCritical: true, Forward: true}, hdr: 2},
		{name: "tlv8 length 255", in: append([]byte{0x02, 0xFF}, long[:255]...), want: tlv.Element{Type: 2}, hdr: 2},
		{name: "tlv8 with rest", in: unhex(t, "01 01 07 02 00"), want: tlv.Element{Type: 1}, hdr: 2, rest: unhex(t, "02 00")},
		{name: "tlv16", in: unhex(t, "88 01 00 02 AA BB"), want: tlv.Element{Type: 0x801, TLV16: true}, hdr: 4},
		{name: "tlv16 N F", in: unhex(t, "E8 00 00 00"), want: tlv.Element{Type: 0x800, TLV16: true, NonCritical: true, Forward: true}, hdr: 4},
		{name: "tlv16 max type", in: unhex(t, "9F FF 00 00"), want: tlv.Element{Type: 0x1FFF, TLV16: true}, hdr: 4},
		{name: "tlv16 length 256", in: append([]byte{0x80, 0x02, 0x01, 0x00}, long...), want: tlv.Element{Type: 2, TLV16: true}, hdr: 4},
		// Readers accept the long form for small types and lengths.
		{name: "tlv16 small type and length", in: unhex(t, "80 05 00 01 07"), want: tlv.Element{Type: 5, TLV16: true}, hdr: 4},
		{name: "tlv16 type 0 empty", in: unhex(t, "80 00 00 00"), want: tlv.Element{Type: 0, TLV16: true}, hdr: 4},
		{name: "tlv16 small with rest", in: unhex(t, "C0 1E 00 01 01 FF"), want: tlv.Element{Type: 0x1E, NonCritical: true, TLV16: true}, hdr: 4, rest: unhex(t, "FF")},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, rest, err := tlv.Read(tt.in)
			if err != nil {
				t.Fatalf("Read: %v", err)
			}
			end := len(tt.in) - len(tt.rest)
			want := tt.want
			want.Value = tt.in[tt.hdr:end]
			want.Raw = tt.in[:end]
			if diff := cmp.Diff(want, e, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("Read (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.rest, rest, cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("rest (-want +got):\n%s", diff)
			}
			if e.HeaderLen() != tt.hdr {
				t.Errorf("HeaderLen = %d, want %d", e.HeaderLen(), tt.hdr)
			}
			// Value and Raw must not let an append overwrite the rest.
			if len(rest) > 0 {
				_ = append(e.Value, 0xEE)
				_ = append(e.Raw, 0xEE)
				if !bytes.Equal(rest, tt.rest) {
					t.Errorf("appending to Value/Raw changed the following bytes: %x", rest)
				}
			}
		})
	}
}

func TestReadErrors(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"empty", nil, tlv.ErrEmptyInput},
		{"one byte tlv8", unhex(t, "01"), tlv.ErrTruncated},
		{"one byte tlv16", unhex(t, "88"), tlv.ErrTruncated},
		{"tlv16 header 2 of 4", unhex(t, "88 01"), tlv.ErrTruncated},
		{"tlv16 header 3 of 4", unhex(t, "88 01 00"), tlv.ErrTruncated},
		{"tlv8 value short", unhex(t, "01 03 AA BB"), tlv.ErrTruncated},
		{"tlv8 value missing", unhex(t, "01 01"), tlv.ErrTruncated},
		{"tlv16 value short", unhex(t, "88 01 00 05 AA"), tlv.ErrTruncated},
		{"tlv16 length ffff", unhex(t, "80 02 FF FF 00"), tlv.ErrTruncated},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := tlv.Read(tt.in)
			if !errors.Is(err, tt.want) {
				t.Fatalf("Read(%x) error = %v, want %v", tt.in, err, tt.want)
			}
			if _, err := tlv.ReadOne(tt.in); !errors.Is(err, tt.want) {
				t.Errorf("ReadOne(%x) error = %v, want %v", tt.in, err, tt.want)
			}
			if len(tt.in) > 0 {
				if _, err := tlv.ReadAll(tt.in); !errors.Is(err, tt.want) {
					t.Errorf("ReadAll(%x) error = %v, want %v", tt.in, err, tt.want)
				}
			}
		})
	}
}

func TestReadOne(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		wantErr error
	}{
		{"exact tlv8", unhex(t, "01 01 07"), nil},
		{"exact tlv16", unhex(t, "88 00 00 02 01 00"), nil},
		{"one trailing byte", unhex(t, "01 01 07 00"), tlv.ErrTrailing},
		{"trailing element", unhex(t, "01 01 07 02 00"), tlv.ErrTrailing},
		{"trailing after tlv16", unhex(t, "88 00 00 00 88"), tlv.ErrTrailing},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tlv.ReadOne(tt.in)
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("ReadOne(%x) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if err == nil && !bytes.Equal(e.Raw, tt.in) {
				t.Errorf("Raw = %x, want the whole input %x", e.Raw, tt.in)
			}
		})
	}
}

func TestReadAllNested(t *testing.T) {
	// 0x1003 { 0x01 CA, 0x03 { 0x02 "X\0", 0x01 (empty) }, 0x41 (N) 0x1E { } } followed by 0x02 "Y\0".
	in := unhex(t, "90 03 00 0D  01 01 CA  03 06 02 02 58 00 01 00  5E 00   02 02 59 00")
	top, err := tlv.ReadAll(in)
	if err != nil {
		t.Fatalf("ReadAll: %v", err)
	}
	if len(top) != 2 {
		t.Fatalf("ReadAll: %d elements, want 2", len(top))
	}
	if top[0].Type != 0x1003 || !top[0].TLV16 || !bytes.Equal(top[0].Raw, in[:17]) {
		t.Errorf("first element = %v raw %x", top[0], top[0].Raw)
	}
	if top[1].Type != 2 || !bytes.Equal(top[1].Raw, in[17:]) {
		t.Errorf("second element = %v raw %x", top[1], top[1].Raw)
	}
	kids, err := top[0].Children()
	if err != nil {
		t.Fatalf("Children: %v", err)
	}
	type flat struct {
		Type  uint16
		NC    bool
		Value string
	}
	var got []flat
	for _, k := range kids {
		got = append(got, flat{k.Type, k.NonCritical, fmt.Sprintf("%x", k.Value)})
	}
	want := []flat{{1, false, "ca"}, {3, false, "0202580001" + "00"}, {0x1E, true, ""}}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("children (-want +got):\n%s", diff)
	}
	grand, err := kids[1].Children()
	if err != nil {
		t.Fatalf("grand children: %v", err)
	}
	if len(grand) != 2 {
		t.Fatalf("grand children: %d, want 2", len(grand))
	}
	if s, err := grand[0].UTF8(); err != nil || s != "X" {
		t.Errorf("grand child 0 = %q, %v; want \"X\"", s, err)
	}
	if x, err := grand[1].Uint(); err != nil || x != 0 {
		t.Errorf("grand child 1 = %d, %v; want 0", x, err)
	}

	// An empty composite has no children.
	if kids, err := tlv.ReadAll(nil); err != nil || len(kids) != 0 {
		t.Errorf("ReadAll(nil) = %v, %v; want no elements", kids, err)
	}
	// A bad element after good ones reports its offset.
	_, err = tlv.ReadAll(unhex(t, "01 01 07 02 05 58"))
	if !errors.Is(err, tlv.ErrTruncated) || !strings.Contains(err.Error(), "offset 3") {
		t.Errorf("ReadAll of a truncated second element: %v, want ErrTruncated at offset 3", err)
	}
}

func TestUint(t *testing.T) {
	tests := []struct {
		in      string
		want    uint64
		wantErr error
	}{
		{"", 0, nil},
		{"00", 0, nil},
		{"01", 1, nil},
		{"00 00 01", 1, nil},
		{"01 02", 0x0102, nil},
		{"CA FE BA BE CA FE FA CE", 0xCAFEBABECAFEFACE, nil},
		{"FF FF FF FF FF FF FF FF", 1<<64 - 1, nil},
		{"00 00 00 00 00 00 00 00", 0, nil},
		{"00 00 00 00 00 00 00 00 01", 0, tlv.ErrIntTooLong},
		{"00 00 00 00 00 00 00 00 00", 0, tlv.ErrIntTooLong},
		{"01 00 00 00 00 00 00 00 00", 0, tlv.ErrIntTooLong},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.in, " ", ""), func(t *testing.T) {
			v := unhex(t, tt.in)
			got, err := tlv.DecodeUint(v)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("DecodeUint(%x) = %#x, %v; want %#x, %v", v, got, err, tt.want, tt.wantErr)
			}
			e, err := tlv.ReadOne(append([]byte{0x01, byte(len(v))}, v...))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := e.Uint(); !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("Element.Uint = %#x, %v; want %#x, %v", got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestUintMinimalEncoding(t *testing.T) {
	for _, x := range []uint64{0, 1, 0xFF, 0x100, 0xFFFF, 0x10000, 1<<56 - 1, 1 << 56, 1<<64 - 1} {
		v := tlv.AppendUintValue(nil, x)
		if len(v) != tlv.UintLen(x) {
			t.Errorf("UintLen(%#x) = %d, encoding has %d bytes", x, tlv.UintLen(x), len(v))
		}
		if len(v) > 0 && v[0] == 0 {
			t.Errorf("AppendUintValue(%#x) = %x has a leading zero", x, v)
		}
		if x == 0 && len(v) != 0 {
			t.Errorf("zero encodes as %x, want an empty value", v)
		}
		if got, err := tlv.DecodeUint(v); err != nil || got != x {
			t.Errorf("DecodeUint(AppendUintValue(%#x)) = %#x, %v", x, got, err)
		}
	}
}

func TestUint8(t *testing.T) {
	tests := []struct {
		in      string
		want    byte
		wantErr error
	}{
		{"", 0, nil},
		{"01", 1, nil},
		{"FF", 0xFF, nil},
		{"00 FF", 0xFF, nil},
		{"01 00", 0, tlv.ErrIntOverflow},
		{"FF FF FF FF FF FF FF FF", 0, tlv.ErrIntOverflow},
		{"00 00 00 00 00 00 00 00 01", 0, tlv.ErrIntTooLong},
	}
	for _, tt := range tests {
		t.Run(strings.ReplaceAll(tt.in, " ", ""), func(t *testing.T) {
			v := unhex(t, tt.in)
			e, err := tlv.ReadOne(append([]byte{0x06, byte(len(v))}, v...))
			if err != nil {
				t.Fatal(err)
			}
			got, err := e.Uint8()
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("Uint8(%x) = %#x, %v; want %#x, %v", v, got, err, tt.want, tt.wantErr)
			}
		})
	}
}

func TestUTF8(t *testing.T) {
	tests := []struct {
		name    string
		in      []byte
		want    string
		wantErr error
	}{
		{"anon", []byte("anon\x00"), "anon", nil},
		{"only terminator", []byte{0}, "", nil},
		{"multibyte", []byte("Äripäev\x00"), "Äripäev", nil},
		{"empty value", nil, "", tlv.ErrNotUTF8Z},
		{"no terminator", []byte("X"), "", tlv.ErrNotUTF8Z},
		{"terminator not last", []byte("X\x00Y"), "", tlv.ErrNotUTF8Z},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tlv.DecodeUTF8(tt.in)
			if !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Fatalf("DecodeUTF8(%x) = %q, %v; want %q, %v", tt.in, got, err, tt.want, tt.wantErr)
			}
			e := tlv.Element{Type: 2, Value: tt.in}
			if got, err := e.UTF8(); !errors.Is(err, tt.wantErr) || got != tt.want {
				t.Errorf("Element.UTF8 = %q, %v", got, err)
			}
		})
	}
}

func TestBuilderHeaderForm(t *testing.T) {
	tests := []struct {
		typ     uint16
		nc, fwd bool
		n       int
	}{
		{typ: 0x00, n: 0},
		{typ: 0x1F, n: 0},
		{typ: 0x20, n: 0},
		{typ: 0x1F, nc: true, fwd: true, n: 1},
		{typ: 0x20, nc: true, n: 1},
		{typ: 0x01, n: 255},
		{typ: 0x01, n: 256},
		{typ: 0x1F, fwd: true, n: 255},
		{typ: 0x1F, fwd: true, n: 256},
		{typ: 0x10, fwd: true, n: 40},
		{typ: 0x800, n: 0},
		{typ: 0x801, n: 255},
		{typ: 0x1FFF, nc: true, fwd: true, n: 65535},
		{typ: 0x01, n: 65535},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("type=%#x,N=%v,F=%v,len=%d", tt.typ, tt.nc, tt.fwd, tt.n), func(t *testing.T) {
			value := bytes.Repeat([]byte{0x5A}, tt.n)
			want := append(refHeader(tt.typ, tt.nc, tt.fwd, tt.n), value...)

			b := tlv.NewBuilder(nil)
			b.Element(tt.typ, tt.nc, tt.fwd, value)
			got, err := b.Bytes()
			if err != nil {
				t.Fatalf("Element: %v", err)
			}
			if !bytes.Equal(got[:min(len(got), 4)], want[:min(len(want), 4)]) || len(got) != len(want) {
				t.Fatalf("Element header = %x (len %d), want %x (len %d)", got[:min(len(got), 4)], len(got), want[:min(len(want), 4)], len(want))
			}
			if hs := tlv.HeaderSize(tt.typ, tt.n); hs != len(want)-tt.n {
				t.Errorf("HeaderSize = %d, want %d", hs, len(want)-tt.n)
			}

			// The same element as a composite: the header is chosen at End.
			b = tlv.NewBuilder(nil)
			b.Begin(tt.typ, tt.nc, tt.fwd)
			b.Raw(value)
			b.End()
			got, err = b.Bytes()
			if err != nil {
				t.Fatalf("Begin/End: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("Begin/End header = %x, want %x", got[:min(len(got), 4)], want[:min(len(want), 4)])
			}

			enc, err := tlv.Encode(tt.typ, tt.nc, tt.fwd, value)
			if err != nil || !bytes.Equal(enc, want) {
				t.Errorf("Encode = %x…, %v", enc[:min(len(enc), 4)], err)
			}

			e, err := tlv.ReadOne(got)
			if err != nil {
				t.Fatalf("ReadOne: %v", err)
			}
			if e.Type != tt.typ || e.NonCritical != tt.nc || e.Forward != tt.fwd || len(e.Value) != tt.n {
				t.Errorf("decoded %v, want type %#x N=%v F=%v len %d", e, tt.typ, tt.nc, tt.fwd, tt.n)
			}
		})
	}
}

func TestBuilderTypedValues(t *testing.T) {
	b := tlv.NewBuilder([]byte{0xAA}) // appends after existing bytes
	b.Uint(0x02, 0)
	b.Uint(0x02, 0x5361_8E80)
	b.UTF8(0x09, "anon")
	b.UTF8(0x09, "")
	b.Bin(0x04, []byte{1, 2})
	b.Bin(0x04, nil)
	got, err := b.Bytes()
	if err != nil {
		t.Fatal(err)
	}
	want := unhex(t, "AA  02 00  02 04 53 61 8E 80  09 05 61 6E 6F 6E 00  09 01 00  04 02 01 02  04 00")
	if !bytes.Equal(got, want) {
		t.Errorf("got  %x\nwant %x", got, want)
	}
}

func TestBuilderNested(t *testing.T) {
	imprint := append([]byte{0x01}, bytes.Repeat([]byte{0x11}, 32)...)
	big := bytes.Repeat([]byte{0x22}, 300)
	tests := []struct {
		name  string
		build func(b *tlv.Builder)
		want  []byte
	}{
		{
			name: "link in chain",
			build: func(b *tlv.Builder) {
				b.Begin(0x801, false, false)
				b.Uint(0x02, 1)
				b.Begin(0x07, false, false)
				b.Uint(0x01, 7)
				b.Bin(0x02, imprint)
				b.End()
				b.End()
			},
			// 0x801 value: 02 01 01 (3) + 07 26 {01 01 07 02 21 imprint} (2+38) = 43 = 0x2B
			want: concat(unhex(t, "88 01 00 2B  02 01 01  07 26 01 01 07 02 21"), imprint),
		},
		{
			name: "three levels all short",
			build: func(b *tlv.Builder) {
				b.Begin(0x03, false, false)
				b.Begin(0x03, true, false)
				b.Begin(0x03, false, true)
				b.Uint(0x01, 0xCA)
				b.End()
				b.End()
				b.End()
			},
			want: unhex(t, "03 07 43 05 23 03 01 01 CA"),
		},
		{
			name: "short inner then long sibling",
			build: func(b *tlv.Builder) {
				b.Begin(0x03, false, false)
				b.Begin(0x04, false, false)
				b.End()
				b.Bin(0x05, big)
				b.End()
			},
			// 04 00 (2) + 05 as TLV16 (4+300) = 306 = 0x132
			want: concat(unhex(t, "80 03 01 32  04 00  80 05 01 2C"), big),
		},
		{
			name: "long inner then short sibling",
			build: func(b *tlv.Builder) {
				b.Begin(0x1003, false, false)
				b.Begin(0x03, false, false)
				b.Raw(big[:256])
				b.End()
				b.Begin(0x03, false, false)
				b.Raw(big[:255])
				b.End()
				b.End()
			},
			// (4+256) + (2+255) = 517 = 0x205
			want: concat(unhex(t, "90 03 02 05  80 03 01 00"), big[:256], unhex(t, "03 FF"), big[:255]),
		},
		{
			name: "empty composites",
			build: func(b *tlv.Builder) {
				b.Begin(0x800, false, false)
				b.End()
				b.Begin(0x04, false, false)
				b.End()
			},
			want: unhex(t, "88 00 00 00  04 00"),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tlv.NewBuilder(nil)
			tt.build(b)
			got, err := b.Bytes()
			if err != nil {
				t.Fatalf("Bytes: %v", err)
			}
			if !bytes.Equal(got, tt.want) {
				t.Errorf("got  %x\nwant %x", got, tt.want)
			}
			// Reset keeps the builder usable and gives the same result.
			b.Reset()
			tt.build(b)
			again, err := b.Bytes()
			if err != nil || !bytes.Equal(again, tt.want) {
				t.Errorf("after Reset: %x, %v", again, err)
			}
		})
	}
}

func concat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestBuilderErrors(t *testing.T) {
	tests := []struct {
		name  string
		build func(b *tlv.Builder)
		want  error // nil: any non-nil error
	}{
		{"value 65536", func(b *tlv.Builder) { b.Element(1, false, false, make([]byte, 65536)) }, tlv.ErrTooLarge},
		{"bin 65536", func(b *tlv.Builder) { b.Bin(0x801, make([]byte, 65536)) }, tlv.ErrTooLarge},
		{"string 65535+terminator", func(b *tlv.Builder) { b.UTF8(2, strings.Repeat("x", 65535)) }, tlv.ErrTooLarge},
		{"composite 65536", func(b *tlv.Builder) {
			b.Begin(0x800, false, false)
			b.Bin(0x801, make([]byte, 65000))
			b.Bin(0x802, make([]byte, 532)) // 65004 + 536 = 65540
			b.End()
		}, tlv.ErrTooLarge},
		{"nested composite too large", func(b *tlv.Builder) {
			b.Begin(0x800, false, false)
			b.Begin(0x801, false, false)
			b.Raw(make([]byte, 65536))
			b.End()
			b.End()
		}, tlv.ErrTooLarge},
		{"type 0x2000", func(b *tlv.Builder) { b.Element(0x2000, false, false, nil) }, tlv.ErrTypeRange},
		{"composite type 0x2000", func(b *tlv.Builder) { b.Begin(0x2000, false, false); b.End() }, tlv.ErrTypeRange},
		{"uint type 0xffff", func(b *tlv.Builder) { b.Uint(0xFFFF, 1) }, tlv.ErrTypeRange},
		{"End without Begin", func(b *tlv.Builder) { b.End() }, nil},
		{"End without Begin after element", func(b *tlv.Builder) { b.Uint(1, 1); b.End() }, nil},
		{"extra End", func(b *tlv.Builder) { b.Begin(3, false, false); b.End(); b.End() }, nil},
		{"Begin without End", func(b *tlv.Builder) { b.Begin(3, false, false) }, nil},
		{"first error kept", func(b *tlv.Builder) {
			b.Element(0x2000, false, false, nil)
			b.Element(1, false, false, make([]byte, 65536))
			b.End()
		}, tlv.ErrTypeRange},
		{"error inside composite", func(b *tlv.Builder) {
			b.Begin(3, false, false)
			b.Element(1, false, false, make([]byte, 65536))
			b.End()
			b.Uint(1, 1)
		}, tlv.ErrTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := tlv.NewBuilder(nil)
			tt.build(b)
			got, err := b.Bytes()
			if err == nil {
				t.Fatalf("Bytes = %d bytes, nil error; want an error", len(got))
			}
			if tt.want != nil && !errors.Is(err, tt.want) {
				t.Errorf("error = %v, want %v", err, tt.want)
			}
			if got != nil {
				t.Errorf("Bytes returned %d bytes with the error", len(got))
			}
			b.Reset()
			b.Uint(1, 1)
			if got, err := b.Bytes(); err != nil || !bytes.Equal(got, []byte{1, 1, 1}) {
				t.Errorf("after Reset: %x, %v", got, err)
			}
		})
	}

	if _, err := tlv.Encode(1, false, false, make([]byte, 65536)); !errors.Is(err, tlv.ErrTooLarge) {
		t.Errorf("Encode of 65536 bytes: %v, want ErrTooLarge", err)
	}
	if _, err := tlv.AppendHeader(nil, 0x2000, false, false, 0); !errors.Is(err, tlv.ErrTypeRange) {
		t.Errorf("AppendHeader(type 0x2000): %v, want ErrTypeRange", err)
	}
}

// node is a random element tree for the round-trip property.
type node struct {
	typ     uint16
	nc, fwd bool
	value   []byte  // leaf value when kids is nil
	kids    []*node // composite when non-nil
}

func randNode(r *rand.Rand, depth int) *node {
	n := &node{nc: r.IntN(4) == 0, fwd: r.IntN(4) == 0}
	switch r.IntN(4) {
	case 0:
		n.typ = uint16(r.IntN(0x20)) // TLV8 range
	case 1:
		n.typ = uint16(0x20 + r.IntN(0x1FE0)) // TLV16 range
	default:
		n.typ = []uint16{0x1F, 0x20, 0x800, 0x801, 0x1FFF, 0}[r.IntN(6)]
	}
	if depth > 0 && r.IntN(3) == 0 {
		n.kids = []*node{}
		for range r.IntN(5) {
			n.kids = append(n.kids, randNode(r, depth-1))
		}
		return n
	}
	var size int
	switch r.IntN(5) {
	case 0:
		size = 0
	case 1:
		size = 250 + r.IntN(12) // around the 255/256 boundary
	case 2:
		size = r.IntN(1200)
	default:
		size = r.IntN(40)
	}
	n.value = make([]byte, size)
	for i := range n.value {
		n.value[i] = byte(r.Uint32())
	}
	return n
}

// build writes n with the Builder (composites via Begin/End).
func (n *node) build(b *tlv.Builder) {
	if n.kids == nil {
		b.Element(n.typ, n.nc, n.fwd, n.value)
		return
	}
	b.Begin(n.typ, n.nc, n.fwd)
	for _, k := range n.kids {
		k.build(b)
	}
	b.End()
}

// ref encodes n independently of the Builder.
func (n *node) ref() []byte {
	v := n.value
	if n.kids != nil {
		v = []byte{}
		for _, k := range n.kids {
			v = append(v, k.ref()...)
		}
	}
	return append(refHeader(n.typ, n.nc, n.fwd, len(v)), v...)
}

// check compares a decoded element with n, recursively.
func (n *node) check(t *testing.T, path string, e tlv.Element) {
	t.Helper()
	if e.Type != n.typ || e.NonCritical != n.nc || e.Forward != n.fwd {
		t.Fatalf("%s: decoded %v, want type %#x N=%v F=%v", path, e, n.typ, n.nc, n.fwd)
	}
	wantTLV16 := n.typ > 0x1F || len(e.Value) > 255
	if e.TLV16 != wantTLV16 {
		t.Fatalf("%s: TLV16 = %v, want %v (type %#x, %d value bytes)", path, e.TLV16, wantTLV16, n.typ, len(e.Value))
	}
	if n.kids == nil {
		if !bytes.Equal(e.Value, n.value) {
			t.Fatalf("%s: value differs", path)
		}
		return
	}
	kids, err := e.Children()
	if err != nil {
		t.Fatalf("%s: Children: %v", path, err)
	}
	if len(kids) != len(n.kids) {
		t.Fatalf("%s: %d children, want %d", path, len(kids), len(n.kids))
	}
	for i, k := range n.kids {
		k.check(t, fmt.Sprintf("%s/%d", path, i), kids[i])
	}
}

func TestRoundTripRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(20140430, 1398866256))
	checked := 0
	for i := range 500 {
		var roots []*node
		for range 1 + r.IntN(3) {
			roots = append(roots, randNode(r, 3))
		}
		b := tlv.NewBuilder(nil)
		var want []byte
		for _, n := range roots {
			n.build(b)
			want = append(want, n.ref()...)
		}
		got, err := b.Bytes()
		if errors.Is(err, tlv.ErrTooLarge) {
			// A random tree may exceed 65535 bytes somewhere; the
			// reference cannot encode its length either.
			continue
		}
		if err != nil {
			t.Fatalf("case %d: %v", i, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("case %d: Builder output differs from the reference encoding\n got %x\nwant %x", i, got[:min(64, len(got))], want[:min(64, len(want))])
		}
		elems, err := tlv.ReadAll(got)
		if err != nil {
			t.Fatalf("case %d: ReadAll: %v", i, err)
		}
		if len(elems) != len(roots) {
			t.Fatalf("case %d: %d elements, want %d", i, len(elems), len(roots))
		}
		for j, n := range roots {
			n.check(t, fmt.Sprintf("case %d/%d", i, j), elems[j])
		}
		checked++
	}
	if checked < 450 {
		t.Errorf("only %d of 500 random cases fit in 65535 bytes", checked)
	}
}

// TestPackSamples decodes the libksi TLV samples (tlv/README.txt: 0x01
// integer, 0x02 string, 0x03 and 0x1003 nested).
func TestPackSamples(t *testing.T) {
	okInts := map[string]uint64{
		"ok_int-1.tlv": 0xCA,
		"ok_int-2.tlv": 0xCAFE,
		"ok_int-3.tlv": 0xCAFEBA,
		"ok_int-4.tlv": 0xCAFEBABE,
		"ok_int-5.tlv": 0xCAFEBABECA,
		"ok_int-6.tlv": 0xCAFEBABECAFE,
		"ok_int-7.tlv": 0xCAFEBABECAFEFA,
		"ok_int-8.tlv": 0xCAFEBABECAFEFACE,
		"ok_int-9.tlv": 0,
	}
	for name, want := range okInts {
		t.Run(name, func(t *testing.T) {
			e, err := tlv.ReadOne(testpack.Read(t, "tlv", name))
			if err != nil {
				t.Fatal(err)
			}
			if got, err := e.Uint(); err != nil || got != want || e.Type != 1 {
				t.Errorf("type %#x value %#x, %v; want type 1 value %#x", e.Type, got, err, want)
			}
		})
	}

	// ok_nested-1.tlv: TLV16 0x1003 holding the eight integers above.
	t.Run("ok_nested-1.tlv", func(t *testing.T) {
		e, err := tlv.ReadOne(testpack.Read(t, "tlv", "ok_nested-1.tlv"))
		if err != nil {
			t.Fatal(err)
		}
		if e.Type != 0x1003 || !e.TLV16 {
			t.Fatalf("outer element %v, want TLV16 type 0x1003", e)
		}
		kids, err := e.Children()
		if err != nil {
			t.Fatal(err)
		}
		var got []uint64
		for _, k := range kids {
			v, err := k.Uint()
			if err != nil || k.Type != 1 {
				t.Fatalf("child %v: %v", k, err)
			}
			got = append(got, v)
		}
		want := []uint64{0xCA, 0xCAFE, 0xCAFEBA, 0xCAFEBABE, 0xCAFEBABECA, 0xCAFEBABECAFE, 0xCAFEBABECAFEFA, 0xCAFEBABECAFEFACE}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("integers (-want +got):\n%s", diff)
		}
	})

	// Every ok_ sample decodes fully under the README schema.
	for _, name := range []string{
		"ok_nested-1.tlv", "ok_nested-2.tlv", "ok_nested-3.tlv", "ok_nested-4.tlv", "ok_nested-5.tlv",
		"ok_nested-6.tlv", "ok_nested-7.tlv", "ok_nested-8.tlv", "ok_nested-9.tlv", "ok_nested-10.tlv",
		"ok_str-1.tlv", "ok_str-2.tlv", "ok_str-3.tlv", "ok_str-4.tlv", "ok_str-5.tlv", "ok_str-6.tlv", "ok_str-7.tlv",
		"ok_oct-1.tlv", "ok_oct-2.tlv",
	} {
		t.Run("schema/"+name, func(t *testing.T) {
			e, err := tlv.ReadOne(testpack.Read(t, "tlv", name))
			if err != nil {
				t.Fatal(err)
			}
			if err := walkSample(e); err != nil {
				t.Error(err)
			}
		})
	}

	// The nok_ samples are malformed at different levels.
	nok := []struct {
		name      string
		headerErr error // from ReadOne
		valueErr  error // from decoding the value (header is fine)
	}{
		{"nok_int-1.tlv", nil, tlv.ErrIntTooLong}, // 01 09 + 9 bytes: well-formed TLV, integer too long
		{"nok_int-2.tlv", tlv.ErrTruncated, nil},  // 01 08 + 7 bytes
		{"nok_int-3.tlv", tlv.ErrTruncated, nil},  // 01 08 + 6 bytes
		{"nok_int-4.tlv", tlv.ErrTruncated, nil},  // 01 08, no value
		{"nok_str-1.tlv", tlv.ErrTruncated, nil},  // 02 02 58: declares 2 bytes, only "X" present
	}
	for _, tt := range nok {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tlv.ReadOne(testpack.Read(t, "tlv", tt.name))
			if !errors.Is(err, tt.headerErr) {
				t.Fatalf("ReadOne error = %v, want %v", err, tt.headerErr)
			}
			if err != nil {
				return
			}
			if err := walkSample(e); !errors.Is(err, tt.valueErr) {
				t.Errorf("value error = %v, want %v", err, tt.valueErr)
			}
		})
	}
}

func walkSample(e tlv.Element) error {
	switch e.Type {
	case 0x01:
		_, err := e.Uint()
		return err
	case 0x02:
		_, err := e.UTF8()
		return err
	case 0x03, 0x1003:
		kids, err := e.Children()
		if err != nil {
			return err
		}
		for _, k := range kids {
			if err := walkSample(k); err != nil {
				return fmt.Errorf("in %v: %w", e, err)
			}
		}
	}
	return nil
}
