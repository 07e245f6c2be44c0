package ksi_test

import (
	"bytes"
	"errors"
	"slices"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// writeSig writes a whole signature with the head h, the links and the
// other elements rest, as a signer does.
func writeSig(t testing.TB, h *ksi.ChainHead, links []ksi.Link, rest []byte) []byte {
	t.Helper()
	var enc []byte
	for i := range links {
		enc = ksi.AppendLinkBytes(enc, &links[i])
	}
	l, err := h.Layout(len(enc), len(rest))
	if err != nil {
		t.Fatal(err)
	}
	sig := h.AppendSignatureHead(nil, l)
	return append(append(sig, enc...), rest...)
}

// readBack reads sig's head and links with the in-place readers and
// writes them again: what the readers accept must be written the same.
func readBack(sig []byte) ([]byte, error) {
	var h ksi.ChainHead
	links, rest, err := ksi.ReadSignatureHead(sig, &h)
	if err != nil {
		return nil, err
	}
	var enc []byte
	for len(links) > 0 {
		var l ksi.Link
		if links, err = ksi.CutSiblingLink(links, &l); err != nil {
			return nil, err
		}
		enc = ksi.AppendLinkBytes(enc, &l)
	}
	lay, err := h.Layout(len(enc), len(rest))
	if err != nil {
		return nil, err
	}
	out := h.AppendSignatureHead(nil, lay)
	return append(append(out, enc...), rest...), nil
}

// The readers give back the head and the links the writers were given,
// for short and long times, chain indexes and input hashes.
func TestReadSignatureHeadReadsTheWriter(t *testing.T) {
	links := []ksi.Link{
		{Left: false, Sibling: imp(ksi.SHA2_256, 1)},
		{Left: true, LevelCorrection: 300, Sibling: imp(ksi.SHA2_512, 2)},
		{Left: true, Sibling: imp(ksi.SHA2_256, 3)},
	}
	rest := []byte{0x88, 0x02, 0x00, 0x03, 0x01, 0x01, 0x07}
	for _, h := range []ksi.ChainHead{
		{AggregationTime: 0, Shape: 1, Input: imp(ksi.SHA2_256, 3), Algorithm: ksi.SHA2_256},
		{AggregationTime: 1_700_000_000, ChainIndex: []uint64{3, 5}, Shape: 0b1110, Input: imp(ksi.RIPEMD160, 4), Algorithm: ksi.SHA2_256},
		{AggregationTime: 1 << 62, ChainIndex: []uint64{1 << 40}, Shape: 1<<63 | 1, Input: imp(ksi.SHA3_512, 5), Algorithm: ksi.SHA2_384},
	} {
		sig := writeSig(t, &h, links, rest)
		got := ksi.ChainHead{ChainIndex: []uint64{9, 9, 9}}
		enc, gotRest, err := ksi.ReadSignatureHead(sig, &got)
		if err != nil {
			t.Fatalf("head %+v: %v", h, err)
		}
		if got.AggregationTime != h.AggregationTime || !slices.Equal(got.ChainIndex, h.ChainIndex) || got.Shape != h.Shape ||
			!bytes.Equal(got.Input, h.Input) || got.Algorithm != h.Algorithm || !bytes.Equal(gotRest, rest) {
			t.Fatalf("read %+v rest %x, wrote %+v rest %x", got, gotRest, h, rest)
		}
		for i, want := range links {
			var l ksi.Link
			if enc, err = ksi.CutSiblingLink(enc, &l); err != nil {
				t.Fatalf("link %d: %v", i, err)
			}
			if l.Left != want.Left || l.LevelCorrection != want.LevelCorrection || !bytes.Equal(l.Sibling, want.Sibling) || l.Metadata != nil {
				t.Fatalf("link %d: read %+v, wrote %+v", i, l, want)
			}
		}
		if len(enc) != 0 {
			t.Fatalf("%d bytes after the links", len(enc))
		}
	}
}

// Everything but the writer's form is refused: damage in each element's
// header, a missing or extra element, non-minimal integers, a link with
// metadata, bytes around the signature.
func TestReadSignatureHeadRefusesOtherForms(t *testing.T) {
	h := ksi.ChainHead{AggregationTime: 1_700_000_000, ChainIndex: []uint64{3}, Shape: 0b110, Input: imp(ksi.SHA2_256, 7), Algorithm: ksi.SHA2_256}
	links := []ksi.Link{{Sibling: imp(ksi.SHA2_256, 1)}, {Left: true, LevelCorrection: 2, Sibling: imp(ksi.SHA2_256, 2)}}
	sig := writeSig(t, &h, links, []byte{0x01, 0x00})
	if _, err := readBack(sig); err != nil {
		t.Fatal(err)
	}
	// Offsets in sig: signature header 0-3, chain header 4-7, time 8-13,
	// chain index 14-16 and 17-19, input hash 20-54, algorithm 55-57,
	// first link 58-95, second link 96-136, rest 137-138.
	// replace puts b in place of the old bytes at offset at; inside the
	// chain, the signature's and the chain's lengths follow, so that only
	// the damage named is wrong.
	replace := func(at int, old int, b ...byte) []byte {
		out := slices.Concat(sig[:at], b, sig[at+old:])
		if d := len(b) - old; d != 0 && at >= 8 {
			for _, off := range []int{2, 6} {
				n := int(out[off])<<8 | int(out[off+1]) + d
				out[off], out[off+1] = byte(n>>8), byte(n)
			}
		}
		return out
	}
	cases := map[string][]byte{
		"signature flag":          replace(0, 1, sig[0]|0x40),
		"signature type":          replace(1, 1, 0x01),
		"signature length":        replace(3, 1, sig[3]-1),
		"trailing byte":           append(slices.Clone(sig), 0),
		"chain type":              replace(5, 1, 0x02),
		"chain flag":              replace(4, 1, sig[4]|0x20),
		"time type":               replace(8, 1, 0x03),
		"time flag":               replace(8, 1, 0x42),
		"time not minimal":        replace(9, 5, 0x05, 0x00, 0x65, 0x53, 0xF1, 0x00),
		"no chain index":          replace(14, 6, 0x01, 0x01, 0x00, 0x01, 0x01, 0x00),
		"chain index not minimal": replace(17, 3, 0x03, 0x02, 0x00, 0x06),
		"input hash TLV16":        replace(20, 2, 0x80, 0x05, 0x00, 0x21),
		"no algorithm":            replace(55, 3, 0x08, 0x01, 0x01),
		"algorithm too long":      replace(55, 3, 0x06, 0x02, 0x01, 0x01),
		"link flag":               replace(58, 1, 0x48),
		"zero level correction":   replace(58, 4, 0x08, 0x25, 0x01, 0x00, 0x02, 0x21),
		"link with metadata":      replace(60, 1, 0x04),
		"link with two hashes":    replace(58, 2, 0x08, 0x46, 0x02, 0x21, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01),
	}
	for name, bad := range cases {
		_, err := readBack(bad)
		switch {
		case err == nil:
			t.Errorf("%s: read back without error", name)
		case !errors.Is(err, ksi.ErrNotWritten):
			t.Errorf("%s: %v, want ErrNotWritten", name, err)
		default:
			t.Logf("%s: %v", name, err)
		}
	}
}

// FuzzReadSignatureHead: the readers never panic, and whatever they accept
// is written back byte for byte: they read the writers' one form.
func FuzzReadSignatureHead(f *testing.F) {
	h := ksi.ChainHead{AggregationTime: 1_700_000_000, ChainIndex: []uint64{3, 1 << 33}, Shape: 0b101, Input: imp(ksi.SHA2_256, 7), Algorithm: ksi.SHA2_256}
	f.Add(writeSig(f, &h, []ksi.Link{{Sibling: imp(ksi.SHA2_256, 1)}, {Left: true, LevelCorrection: 2, Sibling: imp(ksi.SHA2_512, 2)}}, []byte{0x01, 0x00}))
	f.Fuzz(func(t *testing.T, sig []byte) {
		out, err := readBack(sig)
		if err != nil {
			return
		}
		if !bytes.Equal(out, sig) {
			t.Fatalf("read %x, wrote back %x", sig, out)
		}
	})
}
