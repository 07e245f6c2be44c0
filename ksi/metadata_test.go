package ksi_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// refMetadataBody encodes the metadata children by hand (TLV8 only, which
// the test sizes keep to): 01 client id, 02 machine id, 03 sequence, 04
// request time.
func refMetadataBody(f ksi.MetadataFields) []byte {
	str := func(typ byte, s string) []byte { return append(append([]byte{typ, byte(len(s) + 1)}, s...), 0) }
	num := func(typ byte, x uint64) []byte {
		var v []byte
		for ; x != 0; x >>= 8 {
			v = append([]byte{byte(x)}, v...)
		}
		return append([]byte{typ, byte(len(v))}, v...)
	}
	b := str(0x01, f.ClientID)
	if f.MachineID != "" {
		b = append(b, str(0x02, f.MachineID)...)
	}
	if f.SequenceNumber != nil {
		b = append(b, num(0x03, *f.SequenceNumber)...)
	}
	if f.RequestTime != nil {
		b = append(b, num(0x04, *f.RequestTime)...)
	}
	return b
}

func TestAppendMetadataValue(t *testing.T) {
	u := func(x uint64) *uint64 { return &x }
	seqs := []*uint64{nil, u(0), u(0x1234), u(math.MaxUint64)}
	times := []*uint64{nil, u(1398866256123456)}
	in := direct(ksi.SHA2_256, []byte("input"))
	for n := 0; n <= 40; n++ {
		client := strings.Repeat("c", n)
		for _, machine := range []string{"", "machine-01"} {
			for si, seq := range seqs {
				for ti, rt := range times {
					f := ksi.MetadataFields{ClientID: client, MachineID: machine, SequenceNumber: seq, RequestTime: rt}
					name := fmt.Sprintf("client=%d/machine=%q/seq=%d/time=%d", len(client), machine, si, ti)
					checkMetadataValue(t, name, f, in)
				}
			}
		}
	}
	// Multi-byte client ids.
	for _, client := range []string{"ä", "Äripäev", "客户端", strings.Repeat("ü", 20)} {
		checkMetadataValue(t, "utf8/"+client, ksi.MetadataFields{ClientID: client, MachineID: "ö"}, in)
	}
}

func checkMetadataValue(t *testing.T, name string, f ksi.MetadataFields, input ksi.Imprint) {
	t.Helper()
	prefix := []byte{0xAA, 0xBB}
	out, err := ksi.AppendMetadataValue(bytes.Clone(prefix), f)
	if err != nil {
		t.Fatalf("%s: AppendMetadataValue: %v", name, err)
	}
	if !bytes.HasPrefix(out, prefix) {
		t.Fatalf("%s: the bytes before the value were changed", name)
	}
	v := out[len(prefix):]
	if len(v)%2 != 0 {
		t.Errorf("%s: value length %d is odd", name, len(v))
	}
	body := refMetadataBody(f)
	wantPad := []byte{0x7E, 0x01, 0x01}
	if len(body)%2 == 0 {
		wantPad = []byte{0x7E, 0x02, 0x01, 0x01}
	}
	if want := append(wantPad, body...); !bytes.Equal(v, want) {
		t.Fatalf("%s: value\n got %x\nwant %x", name, v, want)
	}
	m := &ksi.Metadata{Value: v}
	if err := m.CheckPadding(); err != nil {
		t.Errorf("%s: CheckPadding: %v", name, err)
	}

	// Wrap it in a link of a chain and parse it back.
	for _, left := range []bool{true, false} {
		links := []ksi.Link{{Left: left, LevelCorrection: 3, Metadata: &ksi.Metadata{Value: v}}}

		// AppendLink writes 07/08 { 01 03, 04 <value> }.
		lb := tlv.NewBuilder(nil)
		ksi.AppendLink(lb, &links[0])
		link, err := lb.Bytes()
		if err != nil {
			t.Fatalf("%s: AppendLink: %v", name, err)
		}
		wantLink, _ := tlv.Encode(map[bool]uint16{true: 7, false: 8}[left], false, false, append([]byte{0x01, 0x01, 0x03}, mustEncode(t, 0x04, v)...))
		if !bytes.Equal(link, wantLink) {
			t.Fatalf("%s: AppendLink = %x, want %x", name, link, wantLink)
		}

		c, err := ksi.NewAggregationChain(1398866256, []uint64{ksi.LinksShape(links)}, input, ksi.SHA2_256, links)
		if err != nil {
			t.Fatalf("%s: NewAggregationChain: %v", name, err)
		}
		e, err := tlv.ReadOne(c.Raw)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		back, err := ksi.ParseAggregationChain(e)
		if err != nil {
			t.Fatalf("%s: ParseAggregationChain: %v", name, err)
		}
		got := back.Links[0].Metadata
		if got == nil {
			t.Fatalf("%s: parsed link has no metadata", name)
		}
		want := &ksi.Metadata{
			ClientID: f.ClientID, MachineID: f.MachineID, HasMachineID: f.MachineID != "",
			HasSequence: f.SequenceNumber != nil, HasRequestTime: f.RequestTime != nil, Value: v,
		}
		if f.SequenceNumber != nil {
			want.SequenceNumber = *f.SequenceNumber
		}
		if f.RequestTime != nil {
			want.RequestTime = *f.RequestTime
		}
		if !metadataEqual(got, want) {
			t.Fatalf("%s: parsed metadata (-want +got):\n%s", name, cmp.Diff(want, got, cmpopts.EquateEmpty()))
		}
		if err := got.CheckPadding(); err != nil {
			t.Errorf("%s: parsed CheckPadding: %v", name, err)
		}
		if back.Links[0].Left != left || back.Links[0].LevelCorrection != 3 || !bytes.Equal(back.Links[0].StepBytes(), v) {
			t.Errorf("%s: parsed link side/level/sibling differ", name)
		}
	}
}

// metadataEqual compares without reflection (cmp.Diff explains failures).
func metadataEqual(a, b *ksi.Metadata) bool {
	return a.ClientID == b.ClientID && a.MachineID == b.MachineID && a.HasMachineID == b.HasMachineID &&
		a.SequenceNumber == b.SequenceNumber && a.HasSequence == b.HasSequence &&
		a.RequestTime == b.RequestTime && a.HasRequestTime == b.HasRequestTime && bytes.Equal(a.Value, b.Value)
}

func mustEncode(t *testing.T, typ uint16, v []byte) []byte {
	t.Helper()
	b, err := tlv.Encode(typ, false, false, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAppendMetadataValueSizeLimit(t *testing.T) {
	// The client id element has a 4-byte header and a terminating zero:
	// body = 4 + len + 1 bytes, then 3 or 4 bytes of padding.
	tests := []struct {
		name    string
		client  int
		prefix  int // bytes already in dst, not part of the value
		wantLen int // 0: an error is expected
	}{
		{"element too large", 70000, 0, 0},
		{"client element over 65535", 65531, 0, 0},
		{"body 65535 + padding 3", 65530, 0, 0},
		{"body 65532 + padding 4", 65527, 0, 0},
		{"body 65531 + padding 3 fits", 65526, 0, 65534},
		{"fits after a prefix in dst", 65526, 16, 65534},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, tt.prefix)
			out, err := ksi.AppendMetadataValue(dst, ksi.MetadataFields{ClientID: strings.Repeat("x", tt.client)})
			if tt.wantLen == 0 {
				if err == nil {
					t.Fatalf("a %d-byte value was accepted", len(out)-tt.prefix)
				}
				return
			}
			if err != nil {
				t.Fatalf("AppendMetadataValue: %v", err)
			}
			v := out[tt.prefix:]
			if len(v) != tt.wantLen || (&ksi.Metadata{Value: v}).CheckPadding() != nil {
				t.Errorf("value of %d bytes, want %d with valid padding", len(v), tt.wantLen)
			}
		})
	}
}

func TestCheckPadding(t *testing.T) {
	client := unhexT(t, "01 03 41 42 00") // client id "AB" (5 bytes)
	client4 := unhexT(t, "01 02 41 00")   // client id "A" (4 bytes)
	// A 33-byte value starting with 01, the form of a SHA-256 imprint:
	// 01 1F + 30 bytes + 00 (a client id element of 31 bytes).
	imprintLike := append(append([]byte{0x01, 0x1F}, bytes.Repeat([]byte{'x'}, 30)...), 0x00)
	tests := []struct {
		name  string
		value []byte
		ok    bool
	}{
		{"padding 7e0101 + odd body", concatBytes(unhexT(t, "7E 01 01"), client), true},
		{"padding 7e020101 + even body", concatBytes(unhexT(t, "7E 02 01 01"), client4), true},
		{"padding before imprint-like body", concatBytes(unhexT(t, "7E 01 01"), imprintLike), true},
		{"no padding, not imprint-like", client, true},
		{"no padding, 33 bytes with unknown algorithm 03", append([]byte{0x03, 0x1F}, imprintLike[2:]...), true},
		{"no padding, 33 bytes starting with SHA-1 id", append([]byte{0x00, 0x1F}, imprintLike[2:]...), true},
		{"no padding, imprint-like SHA-256", imprintLike, false},
		{"no padding, imprint-like SHA-1 (21 bytes)", append([]byte{0x00, 0x13}, bytes.Repeat([]byte{'y'}, 19)...), false},
		{"no padding, imprint-like RIPEMD-160 (21 bytes)", append([]byte{0x02, 0x13}, bytes.Repeat([]byte{'y'}, 19)...), false},
		{"no padding, imprint-like SHA-512 (65 bytes)", append([]byte{0x05, 0x3F}, bytes.Repeat([]byte{'y'}, 63)...), false},
		{"padding without flags", concatBytes(unhexT(t, "1E 01 01"), client), false},
		{"padding with N only", concatBytes(unhexT(t, "5E 01 01"), client), false},
		{"padding with F only", concatBytes(unhexT(t, "3E 01 01"), client), false},
		{"padding as TLV16", concatBytes(unhexT(t, "E0 1E 00 01 01"), client), false},
		{"padding value 02", concatBytes(unhexT(t, "7E 01 02"), client), false},
		{"padding value 00", concatBytes(unhexT(t, "7E 01 00"), client), false},
		{"padding value 0102", concatBytes(unhexT(t, "7E 02 01 02"), client4), false},
		{"padding value empty", concatBytes(unhexT(t, "7E 00"), client4), false},
		{"padding value 010101", concatBytes(unhexT(t, "7E 03 01 01 01"), client), false},
		{"padding, odd length", concatBytes(unhexT(t, "7E 01 01"), client4), false},
		{"padding 7e020101, odd length", concatBytes(unhexT(t, "7E 02 01 01"), client), false},
		{"two paddings", concatBytes(unhexT(t, "7E 01 01 7E 01 01"), client4), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := (&ksi.Metadata{Value: tt.value}).CheckPadding()
			if tt.ok && err != nil {
				t.Errorf("CheckPadding(%x) = %v, want nil", tt.value, err)
			}
			if !tt.ok && !errors.Is(err, ksi.ErrMetadataPadding) {
				t.Errorf("CheckPadding(%x) = %v, want ErrMetadataPadding", tt.value, err)
			}
		})
	}
}

// TestCheckPaddingPackSignatures: the libksi metadata signatures (INT-11
// cases) fail or pass the padding rule as their names say; the one with
// the padding after the client id does not parse.
func TestCheckPaddingPackSignatures(t *testing.T) {
	tests := []struct {
		name string
		ok   bool
	}{
		{"ok-sig-metadata-with-padding.ksig", true},
		{"ok-sig-metadata-without-padding.ksig", true},
		{"nok-sig-metadata-length-not-even.ksig", false},
		{"nok-sig-metadata-padding-flags-not-set.ksig", false},
		{"nok-sig-metadata-padding-missing.ksig", false},
		{"nok-sig-metadata-padding-not-tlv8.ksig", false},
		{"nok-sig-metadata-padding-value-not-01.ksig", false},
		{"nok-sig-metadata-padding-value-not-0101.ksig", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ksi.ParseSignature(testpack.Read(t, "tlv", tt.name))
			if err != nil {
				t.Fatal(err)
			}
			md := s.Metadata()
			if len(md) == 0 {
				t.Fatal("no metadata")
			}
			var bad error
			for _, m := range md {
				if err := m.CheckPadding(); err != nil {
					bad = err
				}
			}
			if tt.ok != (bad == nil) || (bad != nil && !errors.Is(bad, ksi.ErrMetadataPadding)) {
				t.Errorf("CheckPadding = %v, want ok=%v", bad, tt.ok)
			}
		})
	}
	_, err := ksi.ParseSignature(testpack.Read(t, "tlv", "nok-sig-metadata-padding-not-first.ksig"))
	if !errors.Is(err, ksi.ErrFormat) {
		t.Errorf("nok-sig-metadata-padding-not-first.ksig: %v, want ErrFormat", err)
	}
}

func unhexT(t *testing.T, s string) []byte {
	t.Helper()
	var out []byte
	for _, f := range strings.Fields(s) {
		var b byte
		if _, err := fmt.Sscanf(f, "%02X", &b); err != nil {
			t.Fatalf("bad hex %q: %v", f, err)
		}
		out = append(out, b)
	}
	return out
}
