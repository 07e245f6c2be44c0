package ksi_test

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
	"hash"
	"math"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
)

// direct computes imprint(alg, H(parts...)) with the standard library only.
func direct(alg ksi.HashAlg, parts ...[]byte) ksi.Imprint {
	var h hash.Hash
	switch alg {
	case ksi.SHA1:
		h = sha1.New()
	case ksi.SHA2_256:
		h = sha256.New()
	case ksi.SHA2_384:
		h = sha512.New384()
	case ksi.SHA2_512:
		h = sha512.New()
	default:
		panic(fmt.Sprintf("direct: no %v", alg))
	}
	for _, p := range parts {
		h.Write(p)
	}
	return h.Sum([]byte{byte(alg)})
}

func TestChainOutputTwoLinks(t *testing.T) {
	input := direct(ksi.SHA2_256, []byte("document"))
	sibling := direct(ksi.SHA2_512, []byte("sibling")) // any imprint: its bytes are hashed as they are
	legacy := append([]byte{0x03, 0x00, 0x04, 'T', 'e', 's', 't'}, make([]byte, 22)...)
	meta, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: "client"})
	if err != nil {
		t.Fatal(err)
	}
	for _, alg := range []ksi.HashAlg{ksi.SHA2_256, ksi.SHA1, ksi.SHA2_384, ksi.SHA2_512} {
		for _, start := range []uint64{0, 3} {
			t.Run(fmt.Sprintf("%v/start=%d", alg, start), func(t *testing.T) {
				links := []ksi.Link{
					{Left: true, LevelCorrection: 2, Sibling: sibling},
					{Left: false, Metadata: &ksi.Metadata{ClientID: "client", Value: meta}},
					{Left: false, LevelCorrection: 250 - start, Sibling: legacy},
				}
				// docs/design/formats.md#aggregation-hash-chains: level += correction + 1; left: h || s, right: s || h; then the level byte.
				l1 := start + 2 + 1
				h1 := direct(alg, input, sibling, []byte{byte(l1)})
				l2 := l1 + 0 + 1
				h2 := direct(alg, meta, h1, []byte{byte(l2)})
				l3 := l2 + (250 - start) + 1
				h3 := direct(alg, legacy, h2, []byte{byte(l3)})
				if l3 != 255 {
					t.Fatalf("test setup: final level %d", l3)
				}

				var h ksi.Hasher
				got, err := ksi.ChainOutput(&h, alg, input, start, links[:2])
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(ksi.ChainResult{Hash: h2, Level: l2}, got); diff != "" {
					t.Errorf("two links (-want +got):\n%s", diff)
				}
				got, err = ksi.ChainOutput(&h, alg, input, start, links)
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(ksi.ChainResult{Hash: h3, Level: 255}, got); diff != "" {
					t.Errorf("three links (-want +got):\n%s", diff)
				}

				// The same through an encoded chain and its Output method.
				c, err := ksi.NewAggregationChain(1, []uint64{ksi.LinksShape(links)}, input, alg, links)
				if err != nil {
					t.Fatal(err)
				}
				got, err = c.Output(&h, start)
				if err != nil || !got.Hash.Equal(h3) || got.Level != 255 {
					t.Errorf("AggregationChain.Output = %s/%d, %v", got.Hash, got.Level, err)
				}
			})
		}
	}
}

// TestChainOutputDoesNotAlias: results stay valid after later Hasher use.
func TestChainOutputDoesNotAlias(t *testing.T) {
	var h ksi.Hasher
	input := direct(ksi.SHA2_256, []byte("a"))
	links := []ksi.Link{{Left: true, Sibling: direct(ksi.SHA2_256, []byte("b"))}}
	first, err := ksi.ChainOutput(&h, ksi.SHA2_256, input, 0, links)
	if err != nil {
		t.Fatal(err)
	}
	keep := append(ksi.Imprint(nil), first.Hash...)
	if _, err := ksi.ChainOutput(&h, ksi.SHA2_256, first.Hash, 0, links); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Hash(ksi.SHA2_256, []byte("other")); err != nil {
		t.Fatal(err)
	}
	if !first.Hash.Equal(keep) {
		t.Errorf("ChainOutput result changed by later Hasher calls")
	}
}

func TestChainOutputLevelOverflow(t *testing.T) {
	sib := direct(ksi.SHA2_256, []byte("s"))
	in := direct(ksi.SHA2_256, []byte("i"))
	link := func(lc uint64) ksi.Link { return ksi.Link{Left: true, LevelCorrection: lc, Sibling: sib} }
	tests := []struct {
		name      string
		start     uint64
		links     []ksi.Link
		wantLevel uint64 // when no overflow
		overflow  bool
	}{
		{"254 correction reaches 255", 0, []ksi.Link{link(254)}, 255, false},
		{"255 correction", 0, []ksi.Link{link(255)}, 0, true},
		{"start 254", 254, []ksi.Link{link(0)}, 255, false},
		{"start 255", 255, []ksi.Link{link(0)}, 0, true},
		{"sum over two links", 0, []ksi.Link{link(200), link(100)}, 0, true},
		{"many links", 0, func() []ksi.Link {
			var l []ksi.Link
			for range 64 {
				l = append(l, link(3))
			}
			return l
		}(), 0, true},
		// Hand-built links are not limited to 255 by the parser; the sum
		// must not wrap around to a small level.
		{"correction max uint64 wraps", 0, []ksi.Link{link(math.MaxUint64)}, 0, true},
		{"correction near max uint64 wraps", 10, []ksi.Link{link(math.MaxUint64 - 5)}, 0, true},
		{"start max uint64 wraps", math.MaxUint64, []ksi.Link{link(0)}, 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h ksi.Hasher
			got, err := ksi.ChainOutput(&h, ksi.SHA2_256, in, tt.start, tt.links)
			if tt.overflow {
				if !errors.Is(err, ksi.ErrLevelOverflow) {
					t.Fatalf("ChainOutput = level %d, %v; want ErrLevelOverflow", got.Level, err)
				}
				return
			}
			if err != nil || got.Level != tt.wantLevel {
				t.Fatalf("ChainOutput = level %d, %v; want level %d", got.Level, err, tt.wantLevel)
			}
		})
	}
}

func TestChainOutputBadAlgorithm(t *testing.T) {
	in := direct(ksi.SHA2_256, []byte("i"))
	links := []ksi.Link{{Left: true, Sibling: in}}
	tests := []struct {
		alg  ksi.HashAlg
		want error
	}{
		{0x03, ksi.ErrUnknownAlg},
		{0x06, ksi.ErrUnknownAlg},
		{0x0C, ksi.ErrUnknownAlg},
		{0xFF, ksi.ErrUnknownAlg},
		{ksi.SM3, ksi.ErrUnsupportedAlg},
	}
	for _, tt := range tests {
		t.Run(tt.alg.String(), func(t *testing.T) {
			var h ksi.Hasher
			if _, err := ksi.ChainOutput(&h, tt.alg, in, 0, links); !errors.Is(err, tt.want) {
				t.Errorf("ChainOutput error = %v, want %v", err, tt.want)
			}
			c := &ksi.CalendarChain{InputHash: in, Links: []ksi.CalendarLink{{Left: true, Sibling: ksi.Imprint{byte(tt.alg), 1, 2}}}}
			if _, err := c.Output(&h); !errors.Is(err, tt.want) {
				t.Errorf("CalendarChain.Output error = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestCalendarOutputAlgorithmSwitch(t *testing.T) {
	input := direct(ksi.SHA2_256, []byte("aggregation root"))
	s1 := direct(ksi.SHA2_256, []byte("r1"))
	s2 := direct(ksi.SHA2_512, []byte("l2"))
	s3 := direct(ksi.SHA1, []byte("r3"))
	s4 := direct(ksi.SHA2_384, []byte("l4"))
	s5 := direct(ksi.SHA2_256, []byte("r5"))
	links := []ksi.CalendarLink{
		{Left: false, Sibling: s1}, // keeps SHA-256
		{Left: true, Sibling: s2},  // switches to SHA-512
		{Left: false, Sibling: s3}, // right: keeps SHA-512 although the sibling is SHA-1
		{Left: true, Sibling: s4},  // switches to SHA-384
		{Left: false, Sibling: s5}, // keeps SHA-384
	}
	ff := []byte{0xFF}
	h1 := direct(ksi.SHA2_256, s1, input, ff)
	h2 := direct(ksi.SHA2_512, h1, s2, ff)
	h3 := direct(ksi.SHA2_512, s3, h2, ff)
	h4 := direct(ksi.SHA2_384, h3, s4, ff)
	want := direct(ksi.SHA2_384, s5, h4, ff)

	c, err := ksi.NewCalendarChain(1000, 990, input, links)
	if err != nil {
		t.Fatal(err)
	}
	var h ksi.Hasher
	got, err := c.Output(&h)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(want) {
		t.Errorf("Output = %s\nwant     %s", got, want)
	}
	// A second run with the same Hasher gives the same root.
	again, err := c.Output(&h)
	if err != nil || !again.Equal(got) {
		t.Errorf("second Output = %s, %v", again, err)
	}
}

// calendarTree is a calendar tree over leaves [lo, lo+n) built per
// docs/design/formats.md#calendar-hash-chains: the left subtree is the largest perfect tree with fewer
// than n leaves, the right subtree is a calendar tree over the rest.
type calendarTree struct {
	lo, n       uint64
	left, right *calendarTree
}

func buildCalendarTree(lo, n uint64) *calendarTree {
	t := &calendarTree{lo: lo, n: n}
	if n == 1 {
		return t
	}
	k := uint64(1)
	for k < n-k {
		k *= 2
	}
	t.left = buildCalendarTree(lo, k)
	t.right = buildCalendarTree(lo+k, n-k)
	return t
}

// paths returns, for every leaf, its link sides lowest first (true when
// the path's node is the left child).
func (t *calendarTree) paths() map[uint64][]bool {
	out := map[uint64][]bool{}
	if t.left == nil {
		out[t.lo] = []bool{}
		return out
	}
	for leaf, p := range t.left.paths() {
		out[leaf] = append(p, true)
	}
	for leaf, p := range t.right.paths() {
		out[leaf] = append(p, false)
	}
	return out
}

func TestCalendarLeafTime(t *testing.T) {
	for n := uint64(1); n <= 300; n++ {
		p := n - 1
		paths := buildCalendarTree(0, n).paths()
		if len(paths) != int(n) {
			t.Fatalf("tree of %d leaves has %d paths", n, len(paths))
		}
		for leaf, sides := range paths {
			got, err := ksi.CalendarLeafTime(p, sides)
			if err != nil || got != leaf {
				t.Fatalf("P=%d leaf %d sides %v: CalendarLeafTime = %d, %v", p, leaf, sides, got, err)
			}
			if s := calendarSides(p, leaf); !cmp.Equal(s, sides) {
				t.Fatalf("P=%d leaf %d: calendarSides = %v, tree gives %v", p, leaf, s, sides)
			}
		}
	}
}

// TestCalendarLeafTimeMalformed tries every side pattern of up to 8 links
// against small calendars: exactly the leaf paths are accepted.
func TestCalendarLeafTimeMalformed(t *testing.T) {
	for n := uint64(1); n <= 40; n++ {
		p := n - 1
		valid := map[string]uint64{}
		for leaf, sides := range buildCalendarTree(0, n).paths() {
			valid[fmt.Sprint(sides)] = leaf
		}
		for length := 0; length <= 8; length++ {
			for bits := range 1 << length {
				sides := make([]bool, length)
				for i := range sides {
					sides[i] = bits&(1<<i) != 0
				}
				got, err := ksi.CalendarLeafTime(p, sides)
				if leaf, ok := valid[fmt.Sprint(sides)]; ok {
					if err != nil || got != leaf {
						t.Fatalf("P=%d sides %v: %d, %v; want leaf %d", p, sides, got, err, leaf)
					}
				} else if !errors.Is(err, ksi.ErrChainShape) {
					t.Fatalf("P=%d sides %v: %d, %v; want ErrChainShape", p, sides, got, err)
				}
			}
		}
	}
}

func TestCalendarLeafTimeLarge(t *testing.T) {
	all := func(n int, left bool) []bool {
		s := make([]bool, n)
		for i := range s {
			s[i] = left
		}
		return s
	}
	tests := []struct {
		name    string
		p       uint64
		sides   []bool
		want    uint64
		wantErr error
	}{
		{"first of 2^64", math.MaxUint64, all(64, true), 0, nil},
		{"last of 2^64", math.MaxUint64, all(64, false), math.MaxUint64, nil},
		{"last of 2^63+1", 1 << 63, all(1, false), 1 << 63, nil},
		{"first of 2^63+1", 1 << 63, all(64, true), 0, nil},
		{"too short", math.MaxUint64, all(63, false), 0, ksi.ErrChainShape},
		{"too long", math.MaxUint64, all(65, false), 0, ksi.ErrChainShape},
		{"P=0 no links", 0, nil, 0, nil},
		{"P=0 one link", 0, all(1, false), 0, ksi.ErrChainShape},
		{"P=1 no links", 1, nil, 0, ksi.ErrChainShape},
		// docs/design/formats.md#calendar-hash-chains worked example (signature-extended.ksig).
		{"spec example", 1560537246, []bool{false, true, true, false, false, false, false, false, false, false, false, false, false, false, false, false, false}, 1560537241, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ksi.CalendarLeafTime(tt.p, tt.sides)
			if !errors.Is(err, tt.wantErr) || (err == nil && got != tt.want) {
				t.Errorf("CalendarLeafTime = %d, %v; want %d, %v", got, err, tt.want, tt.wantErr)
			}
			if tt.wantErr == nil && tt.p < math.MaxUint64 {
				if s := calendarSides(tt.p, tt.want); fmt.Sprint(s) != fmt.Sprint(tt.sides) {
					t.Errorf("calendarSides = %v", s)
				}
			}
		})
	}
}

// TestPackSignatureOutputs follows the reference signature's chains:
// each output is the next input, the calendar chain ends at the root the
// authentication record signs, and the shape gives the aggregation time.
func TestPackSignatureOutputs(t *testing.T) {
	for _, name := range []string{okSigName, "ok-sig-2014-04-30.1-extended.ksig"} {
		t.Run(name, func(t *testing.T) {
			s, err := ksi.ParseSignature(testpack.Read(t, "tlv", name))
			if err != nil {
				t.Fatal(err)
			}
			var h ksi.Hasher
			var lvl uint64
			cur := s.DocumentHash()
			for i, c := range s.Chains() {
				if !c.InputHash.Equal(cur) {
					t.Fatalf("chain %d input %s, previous output %s", i, c.InputHash, cur)
				}
				r, err := c.Output(&h, lvl)
				if err != nil {
					t.Fatal(err)
				}
				cur, lvl = r.Hash, r.Level
			}
			cal := s.CalendarChain
			if !cal.InputHash.Equal(cur) {
				t.Fatalf("calendar input %s, aggregation output %s", cal.InputHash, cur)
			}
			root, err := cal.Output(&h)
			if err != nil {
				t.Fatal(err)
			}
			want := "01C45A4D73815CBECD5493197513A6C2C9058B0B16B99A64805368A7186D528E8B" // authentication record
			if s.PublicationRecord != nil {
				want = s.PublicationRecord.Data.Hash.Hex()
			} else if s.CalendarAuthRecord.PublishedData.Hash.Hex() != want {
				t.Fatalf("authentication record hash %s", s.CalendarAuthRecord.PublishedData.Hash.Hex())
			}
			if root.Hex() != want {
				t.Errorf("calendar root %s, want %s", root.Hex(), want)
			}
			at, err := cal.AggregationTimeFromShape()
			if err != nil || at != 1398866256 || cal.AggregationTime != 1398866256 {
				t.Errorf("aggregation time from shape %d, %v; element %d", at, err, cal.AggregationTime)
			}
		})
	}
}

// TestRFC3161Output checks docs/design/formats.md#rfc-3161-records against a direct computation, and against
// the RFC 3161 signature of the test pack.
func TestRFC3161Output(t *testing.T) {
	doc := direct(ksi.SHA2_256, []byte("LAPTOP"))
	r := &ksi.RFC3161Record{
		InputHash:     doc,
		TSTInfoPrefix: []byte("tst-prefix"), TSTInfoSuffix: []byte("tst-suffix"), TSTInfoAlg: ksi.SHA2_512,
		SigAttrPrefix: []byte("sa-prefix"), SigAttrSuffix: []byte("sa-suffix"), SigAttrAlg: ksi.SHA2_384,
	}
	tst := direct(ksi.SHA2_512, r.TSTInfoPrefix, doc[1:], r.TSTInfoSuffix)
	sa := direct(ksi.SHA2_384, r.SigAttrPrefix, tst[1:], r.SigAttrSuffix)
	want := direct(ksi.SHA2_256, sa) // the full imprint sa
	var h ksi.Hasher
	got, err := r.Output(&h, ksi.SHA2_256)
	if err != nil || !got.Equal(want) {
		t.Errorf("Output = %s, %v; want %s", got, err, want)
	}
	if _, err := r.Output(&h, 0x03); !errors.Is(err, ksi.ErrUnknownAlg) {
		t.Errorf("Output with algorithm 0x03: %v, want ErrUnknownAlg", err)
	}

	s, err := ksi.ParseSignature(testpack.Read(t, "test_pack", "valid-signatures", "rfc3161-signature.ksig"))
	if err != nil {
		t.Fatal(err)
	}
	first := s.Chains()[0]
	got, err = s.RFC3161.Output(&h, first.InputHash.Alg())
	if err != nil || !got.Equal(first.InputHash) {
		t.Errorf("rfc3161-signature.ksig: Output = %s, %v; first chain input %s", got, err, first.InputHash)
	}
	if s.DocumentHash().Hex() != "0111A700B0C8066C47ECBA05ED37BC14DCADB238552D86C659342D1D7E87B8772D" {
		t.Errorf("rfc3161-signature.ksig: DocumentHash = %s", s.DocumentHash().Hex())
	}
}
