package ksi_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

func sha256Imprint(s string) ksi.Imprint {
	d := sha256.Sum256([]byte(s))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, d[:]...)
}

// levelChain is a chain whose first link is a metadata link (as Tempel's
// aggregator writes) with correction first, then two sibling links.
func levelChain(t *testing.T, first uint64, clientID string) *ksi.AggregationChain {
	t.Helper()
	rt := uint64(1)
	meta, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: clientID, RequestTime: &rt})
	if err != nil {
		t.Fatal(err)
	}
	links := []ksi.Link{
		{Left: true, LevelCorrection: first, Metadata: &ksi.Metadata{Value: meta}},
		{Left: false, LevelCorrection: 3, Sibling: sha256Imprint("a")},
		{Left: true, Sibling: sha256Imprint("b")},
	}
	c, err := ksi.NewAggregationChain(1700000000, []uint64{5, 0b1101}, sha256Imprint("doc"), ksi.SHA2_256, links)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Shifting gives exactly what the writer encodes with the shifted
// correction: 0x01 left out at 0, minimal otherwise, lengths encoded
// anew (also when the link crosses into a TLV16 header); the chain run
// from the shifted-away level gives the same hash and level.
func TestShiftFirstLevelCorrection(t *testing.T) {
	var h ksi.Hasher
	for _, tc := range []struct {
		name       string
		from       uint64
		delta      int
		clientID   string
		wantFailed bool
	}{
		{"0 to 1", 0, 1, "anon", false},
		{"2 to 0", 2, -2, "anon", false},
		{"0 to 255", 0, 255, "anon", false},
		{"255 to 0", 255, -255, "anon", false},
		{"20 to 7", 20, -13, "anon", false},
		{"0 to 240", 0, 240, "anon", false},
		{"240 to 1", 240, -239, "anon", false},
		{"link grows into TLV16", 0, 200, strings.Repeat("x", 228), false},
		{"link shrinks out of TLV16", 200, -200, strings.Repeat("x", 228), false},
		{"below 0", 1, -2, "anon", true},
		{"above 255", 200, 56, "anon", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			orig := levelChain(t, tc.from, tc.clientID)
			got, err := ksi.ShiftFirstLevelCorrection(orig.Raw, tc.delta)
			if tc.wantFailed {
				if !errors.Is(err, ksi.ErrLevelShift) {
					t.Fatalf("shift %d by %+d: %v, want ErrLevelShift", tc.from, tc.delta, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			to := uint64(int(tc.from) + tc.delta)
			want := levelChain(t, to, tc.clientID)
			if !bytes.Equal(got, want.Raw) {
				t.Fatalf("shifted chain\n%x\nwant\n%x", got, want.Raw)
			}
			e, err := tlv.ReadOne(got)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := ksi.ParseAggregationChain(e)
			if err != nil {
				t.Fatal(err)
			}
			if parsed.Links[0].LevelCorrection != to {
				t.Fatalf("first correction %d, want %d", parsed.Links[0].LevelCorrection, to)
			}
			// Each run from the level that makes its first step land at the
			// same level: the same output.
			origStart, shiftedStart := uint64(0), uint64(0)
			if tc.delta > 0 {
				origStart = uint64(tc.delta)
			} else {
				shiftedStart = uint64(-tc.delta)
			}
			a, errA := orig.Output(&h, origStart)
			b, errB := parsed.Output(&h, shiftedStart)
			if errA != nil || errB != nil {
				// Above 255 both ways (the chain climbs past the top).
				if !errors.Is(errA, ksi.ErrLevelOverflow) || !errors.Is(errB, ksi.ErrLevelOverflow) {
					t.Fatalf("outputs: %v / %v", errA, errB)
				}
				return
			}
			if !a.Hash.Equal(b.Hash) || a.Level != b.Level {
				t.Fatalf("outputs differ: %s@%d and %s@%d", a.Hash, a.Level, b.Hash, b.Level)
			}
		})
	}
}

// Flags and unknown non-critical elements of the link and the chain are
// kept, in place; a correction's own flags too.
func TestShiftKeepsOtherElements(t *testing.T) {
	// Link: correction 1 (non-critical flag set), an unknown non-critical
	// element, the sibling.
	link := []byte{0x07, 0x00}
	link = append(link, 0x41, 0x01, 0x01) // 0x01 with N set, value 1
	link = append(link, 0x5E, 0x02, 0xAB, 0xCD)
	link = append(link, 0x02, 33)
	link = append(link, sha256Imprint("s")...)
	link[1] = byte(len(link) - 2)
	var chain []byte
	chain = append(chain, 0x02, 0x01, 0x09, 0x03, 0x01, 0x03)
	chain = append(chain, 0x05, 33)
	chain = append(chain, sha256Imprint("in")...)
	chain = append(chain, 0x06, 0x01, 0x01)
	chain = append(chain, 0x5D, 0x01, 0xEE) // unknown non-critical in the chain
	chain = append(chain, link...)
	raw, err := tlv.Encode(ksi.TypeAggregationChain, false, true, chain)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ksi.ShiftFirstLevelCorrection(raw, 4)
	if err != nil {
		t.Fatal(err)
	}
	wantLink := bytes.Replace(link, []byte{0x41, 0x01, 0x01}, []byte{0x41, 0x01, 0x05}, 1)
	want, _ := tlv.Encode(ksi.TypeAggregationChain, false, true, bytes.Replace(chain, link, wantLink, 1))
	if !bytes.Equal(got, want) {
		t.Fatalf("got\n%x\nwant\n%x", got, want)
	}
	// Down to 0: the correction goes, everything else stays.
	got, err = ksi.ShiftFirstLevelCorrection(raw, -1)
	if err != nil {
		t.Fatal(err)
	}
	wantLink = bytes.Replace(link, []byte{0x41, 0x01, 0x01}, nil, 1)
	wantLink[1] -= 3
	want, _ = tlv.Encode(ksi.TypeAggregationChain, false, true, bytes.Replace(chain, link, wantLink, 1))
	if !bytes.Equal(got, want) {
		t.Fatalf("got\n%x\nwant\n%x", got, want)
	}
}

func TestShiftRejectsMalformed(t *testing.T) {
	noLink, _ := tlv.Encode(ksi.TypeAggregationChain, false, false, []byte{0x02, 0x01, 0x09})
	twoCorr, _ := tlv.Encode(ksi.TypeAggregationChain, false, false, append([]byte{0x07, 0x06, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02}, 0x02, 0x00))
	hugeCorr, _ := tlv.Encode(ksi.TypeAggregationChain, false, false, []byte{0x07, 0x04, 0x01, 0x02, 0x01, 0x00})
	calendar, _ := tlv.Encode(ksi.TypeCalendarChain, false, false, nil)
	for name, b := range map[string][]byte{
		"no link": noLink, "two corrections": twoCorr, "correction 256": hugeCorr,
		"not a chain": calendar, "truncated": noLink[:len(noLink)-1], "empty": nil,
	} {
		if _, err := ksi.ShiftFirstLevelCorrection(b, 1); !errors.Is(err, ksi.ErrLevelShift) {
			t.Errorf("%s: %v, want ErrLevelShift", name, err)
		}
	}
	if _, err := ksi.ShiftInputLevel(calendar, 1); !errors.Is(err, ksi.ErrLevelShift) {
		t.Errorf("a calendar chain as a signature: %v", err)
	}
	c := levelChain(t, 1, "anon")
	tie, _ := tlv.Encode(ksi.TypeSignature, false, false, append(append([]byte{}, c.Raw...), c.Raw...))
	if _, err := ksi.ShiftInputLevel(tie, -1); !errors.Is(err, ksi.ErrLevelShift) {
		t.Errorf("two chains with as many index entries: %v", err)
	}
}

// On a real signature with several aggregation chains in the reference
// pack, only the lowest chain changes; shifted back it is the same file.
func TestShiftInputLevelRealSignature(t *testing.T) {
	raw := testpack.Read(t, "tlv", okSigName)
	orig, err := ksi.ParseSignature(raw)
	if err != nil {
		t.Fatal(err)
	}
	if len(orig.AggregationChains) < 2 {
		t.Fatalf("want a signature with several chains, got %d", len(orig.AggregationChains))
	}
	if same, err := ksi.ShiftInputLevel(raw, 0); err != nil || &same[0] != &raw[0] {
		t.Fatalf("shift by 0: %v", err)
	}
	up, err := ksi.ShiftInputLevel(raw, 3)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ksi.ParseSignature(up)
	if err != nil {
		t.Fatal(err)
	}
	lowest := orig.Chains()[0]
	for i, c := range s.AggregationChains {
		o := orig.AggregationChains[i]
		if o == lowest {
			if c.Links[0].LevelCorrection != o.Links[0].LevelCorrection+3 {
				t.Fatalf("lowest chain's first correction %d, want %d", c.Links[0].LevelCorrection, o.Links[0].LevelCorrection+3)
			}
			continue
		}
		if !bytes.Equal(c.Raw, o.Raw) {
			t.Fatalf("chain %d (not the lowest) changed", i)
		}
	}
	if !bytes.Equal(s.CalendarChain.Raw, orig.CalendarChain.Raw) {
		t.Fatal("calendar chain changed")
	}
	back, err := ksi.ShiftInputLevel(up, -3)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(back, raw) {
		t.Fatal("shifted up and down, the signature differs from the file")
	}
}

// Document hashes: every implemented algorithm not deprecated at t may
// be signed; the refusals name the algorithm and the date.
func TestCheckSigning(t *testing.T) {
	now := uint64(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC).Unix())
	for _, a := range []ksi.HashAlg{ksi.SHA2_256, ksi.RIPEMD160, ksi.SHA2_384, ksi.SHA2_512, ksi.SHA3_224, ksi.SHA3_256, ksi.SHA3_384, ksi.SHA3_512} {
		if err := a.CheckSigning(now); err != nil {
			t.Errorf("%s: %v", a, err)
		}
	}
	for _, tc := range []struct {
		a    ksi.HashAlg
		t    uint64
		want error
		msg  string
	}{
		{ksi.SHA1, now, ksi.ErrDeprecatedAlg, "SHA-1 is deprecated since 2016-07-01"},
		{ksi.SHA1, 1467331199, nil, ""},
		{ksi.SM3, now, ksi.ErrUnsupportedAlg, "SM3"},
		{0x03, now, ksi.ErrUnknownAlg, "0x03"},
		{0x0C, now, ksi.ErrUnknownAlg, "0x0c"},
	} {
		err := tc.a.CheckSigning(tc.t)
		if !errors.Is(err, tc.want) || (err != nil && !strings.Contains(err.Error(), tc.msg)) {
			t.Errorf("%s at %d: %v, want %v naming %q", tc.a, tc.t, err, tc.want, tc.msg)
		}
	}
}

// Shifting never panics; what parsed as a signature before a successful
// shift parses after it, with the first correction moved by delta, and
// shifting back restores that correction.
func FuzzShiftInputLevel(f *testing.F) {
	if _, ok := testpack.Lookup(); ok {
		f.Add(testpack.Read(f, "tlv", okSigName), int16(2))
	}
	f.Add([]byte{0x88, 0x00, 0x00, 0x00}, int16(1))
	f.Fuzz(func(t *testing.T, b []byte, d int16) {
		delta := int(d) % 300
		out, err := ksi.ShiftInputLevel(b, delta)
		if err != nil {
			return
		}
		before, err := ksi.ParseSignature(b)
		if err != nil {
			return
		}
		after, err := ksi.ParseSignature(out)
		if err != nil {
			t.Fatalf("shifted signature does not parse: %v", err)
		}
		want := int(before.Chains()[0].Links[0].LevelCorrection) + delta
		if got := int(after.Chains()[0].Links[0].LevelCorrection); got != want {
			t.Fatalf("first correction %d, want %d", got, want)
		}
		back, err := ksi.ShiftInputLevel(out, -delta)
		if err != nil {
			t.Fatal(err)
		}
		again, err := ksi.ParseSignature(back)
		if err != nil || again.Chains()[0].Links[0].LevelCorrection != before.Chains()[0].Links[0].LevelCorrection {
			t.Fatalf("shifted back: %v", err)
		}
	})
}
