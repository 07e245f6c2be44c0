package calendar

import (
	"bytes"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/tempel-ksi/tempel/ksi/round"
)

func testEntry() *SecondEntry {
	return &SecondEntry{T: 1_700_000_000, Proposal: 0xfeedface, PrevLast: 1_699_999_998, PrevRoot: leafFor(9), Roots: []round.Request{
		{Hash: leafFor(1), Level: 3, Meta: []byte("client a")},
		{Hash: leafFor(2)},
		{Hash: leafFor(3), Level: 200, Meta: []byte{0}},
	}}
}

func TestSecondEntryRoundTrip(t *testing.T) {
	for _, e := range []*SecondEntry{testEntry(), {T: 5}} {
		b, err := e.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := DecodeSecondEntry(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.T != e.T || got.Proposal != e.Proposal || got.PrevLast != e.PrevLast || !bytes.Equal(got.PrevRoot, e.PrevRoot) ||
			(got.PrevRoot == nil) != (e.PrevRoot == nil) || len(got.Roots) != len(e.Roots) {
			t.Fatalf("decoded %+v, want %+v", got, e)
		}
		for i, r := range got.Roots {
			w := e.Roots[i]
			if !r.Hash.Equal(w.Hash) || r.Level != w.Level || !bytes.Equal(r.Meta, w.Meta) || (r.Meta == nil) != (w.Meta == nil) {
				t.Fatalf("root %d: %+v, want %+v", i, r, w)
			}
		}
	}
}

func TestSecondEntryRefusals(t *testing.T) {
	good, err := testEntry().Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":         nil,
		"not an entry":  []byte("XX\x01\x01"),
		"version 2":     append([]byte("TS\x02\x01"), good[4:]...),
		"unknown kind":  append([]byte("TS\x01\x07"), good[4:]...),
		"truncated":     good[:len(good)-1],
		"trailing byte": append(append([]byte(nil), good...), 0),
		"long uvarint":  append(append(append([]byte(nil), good[:62]...), 0x83, 0x00), good[63:]...),
		"huge count":    append(append([]byte(nil), good[:62]...), 0xff, 0xff, 0xff, 0xff, 0x0f),
		"short root":    append(append([]byte(nil), good[:28]...), 5, 1, 2, 3, 4, 5, 0),
	}
	for name, b := range cases {
		if _, err := DecodeSecondEntry(b); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%s: %v, want ErrBadEntry", name, err)
		}
	}
	bad := testEntry()
	bad.Roots[1].Hash = bad.Roots[1].Hash[:20]
	if _, err := bad.Encode(nil); !errors.Is(err, ErrBadEntry) {
		t.Errorf("short root encoded: %v", err)
	}
	bad = testEntry()
	bad.Roots[0].Meta = make([]byte, maxEntryMeta+1)
	if _, err := bad.Encode(nil); !errors.Is(err, ErrBadEntry) {
		t.Errorf("long metadata encoded: %v", err)
	}
}

// FuzzDecodeSecondEntry: arbitrary bytes give an entry or ErrBadEntry,
// never a panic, and an entry that decodes encodes to the same bytes (the
// log's bytes are the authority; one entry has one encoding).
func FuzzDecodeSecondEntry(f *testing.F) {
	good, err := testEntry().Encode(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add([]byte("TS\x01\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodeSecondEntry(b)
		if err != nil {
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("error not ErrBadEntry: %v", err)
			}
			return
		}
		again, err := e.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x, decoded from %x", again, b)
		}
	})
}

// uvarintLen agrees with the encoder at every length boundary.
func TestUvarintLen(t *testing.T) {
	for _, v := range []uint64{0, 1, 127, 128, 16383, 16384, 1<<21 - 1, 1 << 21, 1<<63 - 1, 1 << 63, ^uint64(0)} {
		if got, want := uvarintLen(v), len(binary.AppendUvarint(nil, v)); got != want {
			t.Errorf("uvarintLen(%d) = %d, want %d", v, got, want)
		}
	}
}
