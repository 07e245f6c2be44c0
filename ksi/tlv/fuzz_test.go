package tlv_test

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

func FuzzRead(f *testing.F) {
	for _, s := range []string{
		"", "\x01", "\x01\x01\x07", "\x01\x03\xaa", "\x41\x00", "\x7f\x01\x00",
		"\x80\x05\x00\x01\x07", // TLV16 with a small type and length
		"\x88\x01\x00\x02\xaa\xbb",
		"\x88\x01\x00",
		"\x9f\xff\x00\x00",
		"\x03\x06\x02\x02X\x00\x01\x00\x02\x02Y\x00",
	} {
		f.Add([]byte(s))
	}
	if root, ok := testpack.Lookup(); ok {
		for _, name := range []string{"ok_int-8.tlv", "ok_nested-1.tlv", "ok_nested-9.tlv", "ok_str-4.tlv", "nok_int-1.tlv", "nok_int-2.tlv", "ok-sig-2014-04-30.1.ksig"} {
			if b, err := os.ReadFile(filepath.Join(root, "tlv", name)); err == nil {
				f.Add(b)
			}
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		e, rest, err := tlv.Read(data)
		if err != nil {
			if !errors.Is(err, tlv.ErrTruncated) && !errors.Is(err, tlv.ErrEmptyInput) {
				t.Fatalf("Read(%x): unexpected error %v", data, err)
			}
			return
		}
		if len(e.Raw)+len(rest) != len(data) || !bytes.Equal(e.Raw, data[:len(e.Raw)]) {
			t.Fatalf("Raw %x and rest %x do not split the input %x", e.Raw, rest, data)
		}
		if !bytes.HasSuffix(e.Raw, e.Value) || (e.HeaderLen() != 2 && e.HeaderLen() != 4) || e.TLV16 != (e.HeaderLen() == 4) {
			t.Fatalf("inconsistent element %v: header %d bytes, raw %x", e, e.HeaderLen(), e.Raw)
		}

		// Re-encode. A header in the writers' form comes back byte for
		// byte; any other header comes back in the short form with the
		// same content.
		enc, err := tlv.Encode(e.Type, e.NonCritical, e.Forward, e.Value)
		if err != nil {
			t.Fatalf("Encode(%v): %v", e, err)
		}
		b := tlv.NewBuilder(nil)
		b.Element(e.Type, e.NonCritical, e.Forward, e.Value)
		built, err := b.Bytes()
		if err != nil || !bytes.Equal(built, enc) {
			t.Fatalf("Builder.Element = %x, %v; Encode = %x", built, err, enc)
		}
		canonical := e.TLV16 == (e.Type > 0x1F || len(e.Value) > 0xFF)
		if canonical && !bytes.Equal(enc, e.Raw) {
			t.Fatalf("canonical element %x re-encodes as %x", e.Raw, enc)
		}
		if !canonical && bytes.Equal(enc, e.Raw) {
			t.Fatalf("non-canonical element %x re-encodes unchanged", e.Raw)
		}
		again, err := tlv.ReadOne(enc)
		if err != nil || again.Type != e.Type || again.NonCritical != e.NonCritical || again.Forward != e.Forward || !bytes.Equal(again.Value, e.Value) {
			t.Fatalf("re-encoded %x decodes as %v, %v; want %v", enc, again, err, e)
		}

		// Value decoders must not panic on anything.
		_, _ = e.Uint()
		_, _ = e.Uint8()
		_, _ = e.UTF8()
		if kids, err := e.Children(); err == nil {
			var joined []byte
			for _, k := range kids {
				joined = append(joined, k.Raw...)
			}
			if !bytes.Equal(joined, e.Value) {
				t.Fatalf("children of %v do not cover its value", e)
			}
		}

		// ReadAll over the whole input agrees with repeated Read.
		all, err := tlv.ReadAll(data)
		if err == nil {
			if len(all) == 0 || !bytes.Equal(all[0].Raw, e.Raw) {
				t.Fatalf("ReadAll disagrees with Read on the first element")
			}
			var joined []byte
			for _, k := range all {
				joined = append(joined, k.Raw...)
			}
			if !bytes.Equal(joined, data) {
				t.Fatalf("ReadAll elements do not cover the input")
			}
		}
		if _, err := tlv.ReadOne(data); (err == nil) != (len(rest) == 0) {
			t.Fatalf("ReadOne error %v with %d bytes after the first element", err, len(rest))
		}
	})
}
