package ksi_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/csv"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// okSigName is libksi's reference signature of the document "LAPTOP".
const okSigName = "ok-sig-2014-04-30.1.ksig"

// sigFile is a signature file of the test data.
type sigFile struct {
	name string // relative to the test data root
	data []byte
}

// packSignatures returns every signature file under tlv/ and test_pack/:
// every .ksig file, and every .tlv file that starts like a signature
// element (88 00). The .tlv files that do not are PDUs or other data.
func packSignatures(t *testing.T) []sigFile {
	t.Helper()
	root := testpack.Root(t)
	var out []sigFile
	for _, dir := range []string{testpack.Path(t, "tlv"), testpack.PackDir(t)} {
		err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			ext := filepath.Ext(p)
			if ext != ".ksig" && ext != ".tlv" {
				return nil
			}
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			if ext == ".tlv" && !bytes.HasPrefix(b, []byte{0x88, 0x00}) {
				return nil
			}
			name := p
			if rel, err := filepath.Rel(root, p); err == nil {
				name = filepath.ToSlash(rel)
			}
			out = append(out, sigFile{name, b})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	if len(out) < 100 {
		t.Fatalf("found only %d signature files", len(out))
	}
	return out
}

func TestParseReencodePackSignatures(t *testing.T) {
	parsed := 0
	for _, f := range packSignatures(t) {
		s, err := ksi.ParseSignature(f.data)
		if err != nil {
			if !errors.Is(err, ksi.ErrFormat) {
				t.Errorf("%s: error %v does not wrap ErrFormat", f.name, err)
			}
			continue
		}
		parsed++
		enc, err := s.Encode()
		if err != nil {
			t.Errorf("%s: Encode: %v", f.name, err)
			continue
		}
		if !bytes.Equal(enc, f.data) {
			t.Errorf("%s: Encode differs from the file (%d vs %d bytes)", f.name, len(enc), len(f.data))
		}
		if !bytes.Equal(s.Raw, f.data) {
			t.Errorf("%s: Raw differs from the file", f.name)
		}
	}
	t.Logf("%d signatures parsed and re-encoded", parsed)
	if parsed < 100 {
		t.Errorf("only %d signatures parsed", parsed)
	}
}

// packRow is one row of a test_pack CSV.
type packRow struct {
	file   string // path relative to the CSV's folder
	policy string // "parsing", "not-implemented" or a policy name
	path   string
}

func packRows(t *testing.T) []packRow {
	t.Helper()
	csvs, err := filepath.Glob(filepath.Join(testpack.PackDir(t), "*", "*.csv"))
	if err != nil || len(csvs) == 0 {
		t.Fatalf("no test pack CSVs: %v", err)
	}
	var rows []packRow
	for _, c := range csvs {
		b, err := os.ReadFile(c)
		if err != nil {
			t.Fatal(err)
		}
		r := csv.NewReader(bytes.NewReader(b))
		r.Comma = ';'
		r.Comment = '#'
		r.FieldsPerRecord = -1
		recs, err := r.ReadAll()
		if err != nil {
			t.Fatalf("%s: %v", c, err)
		}
		for _, rec := range recs {
			if len(rec) < 2 || rec[0] == "" {
				continue
			}
			rows = append(rows, packRow{rec[0], rec[1], filepath.Join(filepath.Dir(c), rec[0])})
		}
	}
	return rows
}

// TestPackParsingRows: rows whose policy column is "parsing" must be
// rejected by the parser with ErrFormat; every other row must parse.
func TestPackParsingRows(t *testing.T) {
	var nParsing, nOther int
	for _, row := range packRows(t) {
		if row.policy == "not-implemented" {
			continue
		}
		t.Run(row.file, func(t *testing.T) {
			b, err := os.ReadFile(row.path)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ksi.ParseSignature(b)
			if row.policy == "parsing" {
				nParsing++
				if !errors.Is(err, ksi.ErrFormat) {
					t.Errorf("ParseSignature error = %v, want ErrFormat", err)
				}
				return
			}
			nOther++
			if err != nil {
				t.Errorf("policy %q row does not parse: %v", row.policy, err)
			}
		})
	}
	t.Logf("%d parsing rows, %d other rows", nParsing, nOther)
	if nParsing < 100 {
		t.Errorf("only %d parsing rows", nParsing)
	}
}

// elemSeq returns the types of e's children as a string of hex tokens
// ("2 3 3 5 6 7 8"), and whether every child header is in the writers'
// form without flags.
func elemSeq(e tlv.Element) (string, []tlv.Element, bool) {
	kids, err := e.Children()
	if err != nil {
		return "", nil, false
	}
	var seq []string
	for _, k := range kids {
		if !canonicalHeader(k) {
			return "", nil, false
		}
		seq = append(seq, fmt.Sprintf("%x", k.Type))
	}
	return strings.Join(seq, " "), kids, true
}

func canonicalHeader(e tlv.Element) bool {
	return !e.NonCritical && !e.Forward && e.TLV16 == (e.Type > 0x1F || len(e.Value) > 0xFF)
}

func minimalUint(v []byte) bool { return len(v) == 0 || v[0] != 0 }

var (
	aggrChainForm = regexp.MustCompile(`^2( 3)+ 5 6( [78])+$`)
	linkForm      = regexp.MustCompile(`^(1 )?[234]$`)
	calChainForm  = regexp.MustCompile(`^1 2 5( [78])+$`)
)

// canonicalAggregationChain reports whether raw is in the form
// NewAggregationChain writes: time, chain index, input hash, algorithm,
// links (level correction only when non-zero, then the sibling), with
// short headers where possible, no flags and minimal integers. It is an
// independent description of the writer, written from docs/design/formats.md#tlv and #aggregation-hash-chains.
func canonicalAggregationChain(raw []byte) bool {
	e, err := tlv.ReadOne(raw)
	if err != nil || !canonicalHeader(e) {
		return false
	}
	seq, kids, ok := elemSeq(e)
	if !ok || !aggrChainForm.MatchString(seq) {
		return false
	}
	for _, k := range kids {
		switch k.Type {
		case 2, 3, 6:
			if !minimalUint(k.Value) {
				return false
			}
		case 7, 8:
			lseq, lkids, ok := elemSeq(k)
			if !ok || !linkForm.MatchString(lseq) {
				return false
			}
			if lkids[0].Type == 1 && (len(lkids[0].Value) == 0 || !minimalUint(lkids[0].Value)) {
				return false
			}
		}
	}
	return true
}

// canonicalCalendarChain is the same for NewCalendarChain (docs/design/formats.md#calendar-hash-chains).
func canonicalCalendarChain(raw []byte) bool {
	e, err := tlv.ReadOne(raw)
	if err != nil || !canonicalHeader(e) {
		return false
	}
	seq, kids, ok := elemSeq(e)
	if !ok || !calChainForm.MatchString(seq) {
		return false
	}
	return minimalUint(kids[0].Value) && minimalUint(kids[1].Value)
}

// hasUnknownElements reports whether a parsed chain carries elements the
// parser skipped (in the chain or in its links), which a writer cannot
// reproduce from the fields.
func hasUnknownElements(c *ksi.AggregationChain) bool {
	if len(c.Unknown) > 0 {
		return true
	}
	chain, err := tlv.ReadOne(c.Raw)
	if err != nil {
		return true
	}
	elems, err := chain.Children()
	if err != nil {
		return true
	}
	for _, l := range elems {
		if l.Type != 0x07 && l.Type != 0x08 {
			continue
		}
		kids, err := l.Children()
		if err != nil {
			return true
		}
		for _, k := range kids {
			if k.Type > 4 {
				return true
			}
		}
	}
	return false
}

// TestNewAggregationChainReencodes rebuilds every parsed aggregation chain
// from its fields: a chain the writer's form describes must come back byte
// for byte, and the rebuilt chain must always parse to the same fields.
func TestNewAggregationChainReencodes(t *testing.T) {
	var canonical, other, unknown int
	for _, f := range packSignatures(t) {
		s, err := ksi.ParseSignature(f.data)
		if err != nil {
			continue
		}
		for i, c := range s.AggregationChains {
			if hasUnknownElements(c) {
				unknown++
				continue
			}
			n, err := ksi.NewAggregationChain(c.AggregationTime, c.ChainIndex, c.InputHash, c.Algorithm, c.Links)
			if err != nil {
				t.Errorf("%s chain %d: NewAggregationChain: %v", f.name, i, err)
				continue
			}
			e, err := tlv.ReadOne(n.Raw)
			if err != nil {
				t.Fatalf("%s chain %d: rebuilt chain: %v", f.name, i, err)
			}
			back, err := ksi.ParseAggregationChain(e)
			if err != nil {
				t.Errorf("%s chain %d: rebuilt chain does not parse: %v", f.name, i, err)
				continue
			}
			if back.AggregationTime != c.AggregationTime || back.Algorithm != c.Algorithm || !back.InputHash.Equal(c.InputHash) ||
				!cmp.Equal(back.ChainIndex, c.ChainIndex) || back.Shape() != c.Shape() || !sameLinks(back.Links, c.Links) {
				t.Errorf("%s chain %d: rebuilt chain parses to different fields", f.name, i)
			}
			if canonicalAggregationChain(c.Raw) && c.InputData == nil {
				canonical++
				if !bytes.Equal(n.Raw, c.Raw) {
					t.Errorf("%s chain %d: canonical chain re-encodes differently\n got %x\nwant %x", f.name, i, n.Raw, c.Raw)
				}
			} else {
				other++
			}
		}
	}
	t.Logf("aggregation chains: %d canonical (re-encoded identically), %d in another form, %d with unknown elements", canonical, other, unknown)
	if canonical < 100 {
		t.Errorf("only %d canonical chains", canonical)
	}
}

func sameLinks(a, b []ksi.Link) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Left != b[i].Left || a[i].LevelCorrection != b[i].LevelCorrection || !bytes.Equal(a[i].StepBytes(), b[i].StepBytes()) ||
			(a[i].SiblingHash() == nil) != (b[i].SiblingHash() == nil) || (a[i].LegacyID() == nil) != (b[i].LegacyID() == nil) {
			return false
		}
	}
	return true
}

// TestOkSignatureChainsCanonical: the three aggregation chains and the
// calendar chain of the reference signature are in the writers' form
// (checked by hand: order 02 03… 05 06 07/08…, short headers, minimal
// integers, no input data), so the writers reproduce them exactly.
func TestOkSignatureChainsCanonical(t *testing.T) {
	s, err := ksi.ParseSignature(testpack.Read(t, "tlv", okSigName))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.AggregationChains) != 3 {
		t.Fatalf("%d aggregation chains, want 3", len(s.AggregationChains))
	}
	for i, c := range s.AggregationChains {
		if !canonicalAggregationChain(c.Raw) {
			t.Errorf("chain %d is not in the writers' form", i)
		}
		n, err := ksi.NewAggregationChain(c.AggregationTime, c.ChainIndex, c.InputHash, c.Algorithm, c.Links)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(n.Raw, c.Raw) {
			t.Errorf("chain %d re-encodes differently\n got %x\nwant %x", i, n.Raw, c.Raw)
		}
	}
	c := s.CalendarChain
	if !canonicalCalendarChain(c.Raw) || !c.HasAggregationTime {
		t.Fatalf("calendar chain is not in the writers' form")
	}
	n, err := ksi.NewCalendarChain(c.PublicationTime, c.AggregationTime, c.InputHash, c.Links)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(n.Raw, c.Raw) {
		t.Errorf("calendar chain re-encodes differently\n got %x\nwant %x", n.Raw, c.Raw)
	}
}

func TestNewCalendarChainReencodes(t *testing.T) {
	var canonical, other, skipped int
	for _, f := range packSignatures(t) {
		s, err := ksi.ParseSignature(f.data)
		if err != nil || s.CalendarChain == nil {
			continue
		}
		c := s.CalendarChain
		if !c.HasAggregationTime || len(c.Unknown) > 0 {
			skipped++
			continue
		}
		n, err := ksi.NewCalendarChain(c.PublicationTime, c.AggregationTime, c.InputHash, c.Links)
		if err != nil {
			t.Errorf("%s: NewCalendarChain: %v", f.name, err)
			continue
		}
		e, err := tlv.ReadOne(n.Raw)
		if err != nil {
			t.Fatalf("%s: %v", f.name, err)
		}
		back, err := ksi.ParseCalendarChain(e)
		if err != nil {
			t.Errorf("%s: rebuilt calendar chain does not parse: %v", f.name, err)
			continue
		}
		if diff := cmp.Diff(c.Links, back.Links); diff != "" || back.PublicationTime != c.PublicationTime ||
			back.AggregationTime != c.AggregationTime || !back.InputHash.Equal(c.InputHash) {
			t.Errorf("%s: rebuilt calendar chain parses to different fields %s", f.name, diff)
		}
		if canonicalCalendarChain(c.Raw) {
			canonical++
			if !bytes.Equal(n.Raw, c.Raw) {
				t.Errorf("%s: canonical calendar chain re-encodes differently", f.name)
			}
		} else {
			other++
		}
	}
	t.Logf("calendar chains: %d canonical, %d in another form, %d without aggregation time or with unknown elements", canonical, other, skipped)
	if canonical < 100 {
		t.Errorf("only %d canonical calendar chains", canonical)
	}
}

func TestOkSignatureFacts(t *testing.T) {
	s, err := ksi.ParseSignature(testpack.Read(t, "tlv", okSigName))
	if err != nil {
		t.Fatal(err)
	}
	doc := sha256.Sum256([]byte("LAPTOP"))
	want := ksi.Imprint(append([]byte{byte(ksi.SHA2_256)}, doc[:]...))
	if got := s.DocumentHash(); !got.Equal(want) {
		t.Errorf("DocumentHash = %s, want %s", got, want)
	}
	if got := s.DocumentHash().Hex(); got != "0111A700B0C8066C47ECBA05ED37BC14DCADB238552D86C659342D1D7E87B8772D" {
		t.Errorf("DocumentHash = %s", got)
	}
	if got := s.SigningTime(); got != 1398866256 {
		t.Errorf("SigningTime = %d, want 1398866256", got)
	}
	if got, want := s.SigningUTC(), time.Date(2014, 4, 30, 13, 57, 36, 0, time.UTC); !got.Equal(want) {
		t.Errorf("SigningUTC = %v, want %v", got, want)
	}
	// Legacy ids 03 00 02 "GT" (upper chain link) and 03 00 05 "testA".
	if diff := cmp.Diff([]string{"GT", "testA"}, s.Identity()); diff != "" {
		t.Errorf("Identity (-want +got):\n%s", diff)
	}
	var lens []int
	for _, c := range s.Chains() {
		lens = append(lens, len(c.ChainIndex))
	}
	if diff := cmp.Diff([]int{3, 2, 1}, lens); diff != "" {
		t.Errorf("Chains order by chain-index length (-want +got):\n%s", diff)
	}
	if s.CalendarAuthRecord == nil || s.PublicationRecord != nil || s.IsExtended() {
		t.Errorf("want a calendar authentication record and no publication record")
	}
}

// TestParsePrefixes: every proper prefix of a signature is rejected with
// ErrFormat (the slice capacity is cut so reads past the end would panic).
func TestParsePrefixes(t *testing.T) {
	b := testpack.Read(t, "tlv", okSigName)
	for n := range len(b) {
		s, err := ksi.ParseSignature(b[:n:n])
		if err == nil {
			t.Fatalf("prefix of %d bytes parsed (%d chains)", n, len(s.AggregationChains))
		}
		if !errors.Is(err, ksi.ErrFormat) {
			t.Fatalf("prefix of %d bytes: error %v does not wrap ErrFormat", n, err)
		}
	}
}

// TestParseBitFlips: every single-bit change of a signature is either
// rejected with ErrFormat or parsed into a usable signature.
func TestParseBitFlips(t *testing.T) {
	b := testpack.Read(t, "tlv", okSigName)
	var h ksi.Hasher
	parsed := 0
	for i := range len(b) * 8 {
		c := bytes.Clone(b)
		c[i/8] ^= 1 << (i % 8)
		s, err := ksi.ParseSignature(c)
		if err != nil {
			if !errors.Is(err, ksi.ErrFormat) {
				t.Fatalf("bit %d: error %v does not wrap ErrFormat", i, err)
			}
			continue
		}
		parsed++
		if !bytes.Equal(s.Raw, c) {
			t.Fatalf("bit %d: Raw is not the input", i)
		}
		exerciseSignature(&h, s)
	}
	t.Logf("%d of %d bit flips still parse", parsed, len(b)*8)
}

// exerciseSignature calls every accessor and computation on s; they must
// not panic whatever the (parsed) content.
func exerciseSignature(h *ksi.Hasher, s *ksi.Signature) {
	_ = s.DocumentHash().String()
	_ = s.SigningTime()
	_ = s.SigningUTC()
	_ = s.Identity()
	for _, m := range s.Metadata() {
		_ = m.CheckPadding()
		_, _ = m.RequestUTC()
	}
	lvl := uint64(0)
	for _, c := range s.Chains() {
		_ = c.Shape()
		r, err := c.Output(h, lvl)
		if err == nil {
			lvl = r.Level
		}
	}
	if s.RFC3161 != nil {
		_, _ = s.RFC3161.Output(h, s.Chains()[0].InputHash.Alg())
	}
	if c := s.CalendarChain; c != nil {
		_, _ = c.Output(h)
		_, _ = c.AggregationTimeFromShape()
	}
	if p := s.PublicationRecord; p != nil {
		_ = p.Data.String()
	}
}

// TestEncodeKeepsOuterHeader: a signature element with the N or F flag
// set must either be rejected or re-encode to the same bytes (Encode
// promises the parsed bytes).
func TestEncodeKeepsOuterHeader(t *testing.T) {
	base := buildTestSignature(t).Raw
	for _, flags := range []byte{0x20, 0x40, 0x60} {
		t.Run(fmt.Sprintf("flags=%#x", flags), func(t *testing.T) {
			in := bytes.Clone(base)
			in[0] |= flags
			s, err := ksi.ParseSignature(in)
			if err != nil {
				if !errors.Is(err, ksi.ErrFormat) {
					t.Fatalf("error %v does not wrap ErrFormat", err)
				}
				return // rejecting is fine too
			}
			enc, err := s.Encode()
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(enc, in) {
				t.Errorf("parsed signature with header %x re-encodes with header %x", in[:4], enc[:4])
			}
		})
	}
}

func TestExtend(t *testing.T) {
	s, err := ksi.ParseSignature(testpack.Read(t, "tlv", okSigName))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := ksi.ParseSignature(testpack.Read(t, "tlv", "ok-sig-2014-04-30.1-extended.ksig"))
	if err != nil {
		t.Fatal(err)
	}
	fileRecord, err := ext.PublicationRecord.WithType(ksi.TypePubFileRecord)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		pub  *ksi.PublicationRecord
	}{
		{"signature record 0x803", ext.PublicationRecord},
		{"publications file record 0x703", fileRecord},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.Extend(ext.CalendarChain, tt.pub)
			if err != nil {
				t.Fatalf("Extend: %v", err)
			}
			if got.CalendarChain == nil || !bytes.Equal(got.CalendarChain.Raw, ext.CalendarChain.Raw) {
				t.Errorf("calendar chain differs from the extended file's")
			}
			if got.PublicationRecord == nil || !bytes.Equal(got.PublicationRecord.Raw, ext.PublicationRecord.Raw) {
				t.Errorf("publication record differs from the extended file's")
			}
			if got.CalendarAuthRecord != nil {
				t.Errorf("calendar authentication record kept")
			}
			if len(got.AggregationChains) != len(s.AggregationChains) {
				t.Fatalf("%d aggregation chains, want %d", len(got.AggregationChains), len(s.AggregationChains))
			}
			for i, c := range got.AggregationChains {
				if !bytes.Equal(c.Raw, s.AggregationChains[i].Raw) {
					t.Errorf("aggregation chain %d changed", i)
				}
			}
			if !got.IsExtended() || !got.DocumentHash().Equal(s.DocumentHash()) {
				t.Errorf("extended signature: IsExtended %v, document %s", got.IsExtended(), got.DocumentHash())
			}
			enc, err := got.Encode()
			if err != nil || !bytes.Equal(enc, got.Raw) {
				t.Errorf("Encode of the extended signature: %v", err)
			}
			// The original is untouched.
			if s.CalendarAuthRecord == nil || s.PublicationRecord != nil {
				t.Errorf("Extend modified the original signature")
			}
		})
	}
	// Extending to the same calendar chain without a record drops the
	// authentication record.
	got, err := s.Extend(s.CalendarChain, nil)
	if err != nil {
		t.Fatal(err)
	}
	if got.CalendarAuthRecord != nil || got.PublicationRecord != nil || !bytes.Equal(got.CalendarChain.Raw, s.CalendarChain.Raw) {
		t.Errorf("Extend(chain, nil): auth %v, pub %v", got.CalendarAuthRecord != nil, got.PublicationRecord != nil)
	}
}

// testSig holds the parts of a small, internally consistent signature
// built with the package's writers.
type testSig struct {
	*ksi.Signature
	low, top *ksi.AggregationChain
	cal      *ksi.CalendarChain
	pub      *ksi.PublicationRecord
	doc      ksi.Imprint
}

func imprintOf(a ksi.HashAlg, data string) ksi.Imprint {
	m, err := a.Digest([]byte(data))
	if err != nil {
		panic(err)
	}
	return m
}

// buildTestSignature builds a signature with two aggregation chains (the
// lower one with a metadata link), a calendar chain and a publication
// record, all consistent with each other (docs/design/formats.md#consistency-between-the-parts).
func buildTestSignature(t testing.TB) testSig {
	t.Helper()
	const aggrTime, pubTime = 1398866256, 1398902400
	doc := imprintOf(ksi.SHA2_256, "LAPTOP")
	meta, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: "anon", MachineID: "test"})
	if err != nil {
		t.Fatal(err)
	}
	lowLinks := []ksi.Link{
		{Left: true, LevelCorrection: 1, Sibling: imprintOf(ksi.SHA2_256, "sibling 1")},
		{Left: false, Metadata: &ksi.Metadata{ClientID: "anon", MachineID: "test", HasMachineID: true, Value: meta}},
	}
	topLinks := []ksi.Link{
		{Left: false, Sibling: imprintOf(ksi.SHA2_256, "sibling 2")},
		{Left: true, Sibling: imprintOf(ksi.SHA2_256, "sibling 3")},
	}
	topShape, lowShape := ksi.LinksShape(topLinks), ksi.LinksShape(lowLinks)
	var h ksi.Hasher
	lowOut, err := ksi.ChainOutput(&h, ksi.SHA2_256, doc, 0, lowLinks)
	if err != nil {
		t.Fatal(err)
	}
	low, err := ksi.NewAggregationChain(aggrTime, []uint64{topShape, lowShape}, doc, ksi.SHA2_256, lowLinks)
	if err != nil {
		t.Fatal(err)
	}
	topOut, err := ksi.ChainOutput(&h, ksi.SHA2_256, lowOut.Hash, lowOut.Level, topLinks)
	if err != nil {
		t.Fatal(err)
	}
	top, err := ksi.NewAggregationChain(aggrTime, []uint64{topShape}, lowOut.Hash, ksi.SHA2_256, topLinks)
	if err != nil {
		t.Fatal(err)
	}
	// The calendar leaf of aggrTime in a calendar of pubTime+1 leaves.
	sides := calendarSides(pubTime, aggrTime)
	var calLinks []ksi.CalendarLink
	for i, left := range sides {
		calLinks = append(calLinks, ksi.CalendarLink{Left: left, Sibling: imprintOf(ksi.SHA2_256, fmt.Sprint("calendar ", i))})
	}
	cal, err := ksi.NewCalendarChain(pubTime, aggrTime, topOut.Hash, calLinks)
	if err != nil {
		t.Fatal(err)
	}
	root, err := cal.Output(&h)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(pubTime, root), []string{"test reference"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s, err := ksi.SignatureFromElements([][]byte{top.Raw, low.Raw, cal.Raw, pub.Raw})
	if err != nil {
		t.Fatal(err)
	}
	return testSig{Signature: s, low: low, top: top, cal: cal, pub: pub, doc: doc}
}

// calendarSides returns the link sides (lowest first, true = left) of leaf
// t in the calendar tree over leaves 0..p (docs/design/formats.md#calendar-hash-chains), computed by
// descending the tree: a node over n leaves has the largest perfect tree
// with fewer than n leaves on its left.
func calendarSides(p, t uint64) []bool {
	var rootFirst []bool
	lo, n := uint64(0), p+1
	for n > 1 {
		k := uint64(1)
		for k < n-k { // 2k < n without overflow
			k *= 2
		}
		if t < lo+k {
			rootFirst = append(rootFirst, true)
			n = k
		} else {
			rootFirst = append(rootFirst, false)
			lo += k
			n -= k
		}
	}
	out := make([]bool, len(rootFirst))
	for i, s := range rootFirst {
		out[len(out)-1-i] = s
	}
	return out
}

func TestSignatureFromElements(t *testing.T) {
	ts := buildTestSignature(t)
	s := ts.Signature
	if got := s.Chains(); len(got) != 2 || got[0] != s.AggregationChains[1] || got[1] != s.AggregationChains[0] {
		t.Errorf("Chains() is not lowest first")
	}
	if !s.DocumentHash().Equal(ts.doc) {
		t.Errorf("DocumentHash = %s, want %s", s.DocumentHash(), ts.doc)
	}
	if s.SigningTime() != 1398866256 {
		t.Errorf("SigningTime = %d", s.SigningTime())
	}
	if diff := cmp.Diff([]string{"anon"}, s.Identity()); diff != "" {
		t.Errorf("Identity (-want +got):\n%s", diff)
	}
	if m := s.Metadata(); len(m) != 1 || m[0].ClientID != "anon" || m[0].MachineID != "test" || m[0].CheckPadding() != nil {
		t.Errorf("Metadata = %+v", m)
	}
	for name, pair := range map[string][2][]byte{
		"low chain": {s.Chains()[0].Raw, ts.low.Raw},
		"top chain": {s.Chains()[1].Raw, ts.top.Raw},
		"calendar":  {s.CalendarChain.Raw, ts.cal.Raw},
		"pub":       {s.PublicationRecord.Raw, ts.pub.Raw},
	} {
		if !bytes.Equal(pair[0], pair[1]) {
			t.Errorf("%s bytes differ from the part given", name)
		}
	}
	enc, err := s.Encode()
	if err != nil || !bytes.Equal(enc, s.Raw) {
		t.Errorf("Encode = %v; differs from Raw", err)
	}
	want := concatBytes([]byte{0x88, 0x00, byte((len(s.Raw) - 4) >> 8), byte(len(s.Raw) - 4)}, ts.top.Raw, ts.low.Raw, ts.cal.Raw, ts.pub.Raw)
	if !bytes.Equal(s.Raw, want) {
		t.Errorf("Raw is not 88 00 LL LL followed by the parts in order")
	}
	// The parts are consistent: chain outputs feed the next input, the
	// calendar leaf time is the aggregation time, the root is published.
	var h ksi.Hasher
	r, err := s.Chains()[0].Output(&h, 0)
	if err != nil || !r.Hash.Equal(s.Chains()[1].InputHash) {
		t.Errorf("low chain output %s, %v; top input %s", r.Hash, err, s.Chains()[1].InputHash)
	}
	if at, err := s.CalendarChain.AggregationTimeFromShape(); err != nil || at != s.SigningTime() {
		t.Errorf("calendar leaf time %d, %v; want %d", at, err, s.SigningTime())
	}
}

func concatBytes(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

func TestSignatureFromElementsErrors(t *testing.T) {
	ts := buildTestSignature(t)
	auth, err := ksi.NewCalendarAuthRecord(ts.pub.Data, ksi.SignatureData{Type: "1.2.840.113549.1.1.11", Value: []byte{1, 2, 3}, CertificateID: []byte{1, 2, 3, 4}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		parts [][]byte
	}{
		{"nothing", nil},
		{"no aggregation chain", [][]byte{ts.cal.Raw, ts.pub.Raw}},
		{"publication record without calendar chain", [][]byte{ts.low.Raw, ts.top.Raw, ts.pub.Raw}},
		{"auth record without calendar chain", [][]byte{ts.low.Raw, ts.top.Raw, auth.Raw}},
		{"publication and auth record", [][]byte{ts.low.Raw, ts.top.Raw, ts.cal.Raw, ts.pub.Raw, auth.Raw}},
		{"two calendar chains", [][]byte{ts.low.Raw, ts.top.Raw, ts.cal.Raw, ts.cal.Raw}},
		{"two publication records", [][]byte{ts.low.Raw, ts.cal.Raw, ts.pub.Raw, ts.pub.Raw}},
		{"unknown critical element", [][]byte{ts.low.Raw, {0x0F, 0x00}}},
		{"unknown critical TLV16 element", [][]byte{ts.low.Raw, {0x88, 0x07, 0x00, 0x00}}},
		{"truncated chain", [][]byte{ts.low.Raw[:len(ts.low.Raw)-1]}},
		{"chain with trailing byte", [][]byte{append(bytes.Clone(ts.low.Raw), 0x00)}},
		{"too large", [][]byte{ts.low.Raw, append([]byte{0xCF, 0x0F, 0xFF, 0xDC}, make([]byte, 0xFFDC)...)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := ksi.SignatureFromElements(tt.parts); !errors.Is(err, ksi.ErrFormat) {
				t.Fatalf("SignatureFromElements error = %v, want ErrFormat", err)
			}
		})
	}

	// A non-critical unknown element is kept and re-encoded in place.
	unknown := []byte{0x4F, 0x02, 0xAB, 0xCD}
	s, err := ksi.SignatureFromElements([][]byte{ts.low.Raw, unknown, ts.top.Raw})
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Unknown) != 1 || !bytes.Equal(s.Unknown[0].Raw, unknown) {
		t.Errorf("Unknown = %v", s.Unknown)
	}
	enc, err := s.Encode()
	n := len(ts.low.Raw) + len(unknown) + len(ts.top.Raw)
	if err != nil || !bytes.Equal(enc, concatBytes([]byte{0x88, 0x00, byte(n >> 8), byte(n)}, ts.low.Raw, unknown, ts.top.Raw)) {
		t.Errorf("Encode with an unknown element: %x, %v", enc, err)
	}
}

func TestLinksShape(t *testing.T) {
	l := func(left bool) ksi.Link { return ksi.Link{Left: left} }
	tests := []struct {
		name  string
		links []ksi.Link
		want  uint64
	}{
		{"no links", nil, 0b1},
		{"one left", []ksi.Link{l(true)}, 0b11},
		{"one right", []ksi.Link{l(false)}, 0b10},
		// Highest link first after the sentinel: links (lowest first) L R R -> 1 R R L = 1001.
		{"L R R", []ksi.Link{l(true), l(false), l(false)}, 0b1001},
		{"R R L", []ksi.Link{l(false), l(false), l(true)}, 0b1100},
		{"R L L R R", []ksi.Link{l(false), l(true), l(true), l(false), l(false)}, 0b100110},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ksi.LinksShape(tt.links); got != tt.want {
				t.Errorf("LinksShape = %#b, want %#b", got, tt.want)
			}
		})
	}
	// 63 links use all 64 bits.
	var many []ksi.Link
	for range 63 {
		many = append(many, l(true))
	}
	if got := ksi.LinksShape(many); got != 1<<64-1 {
		t.Errorf("63 left links: %#x", got)
	}

	// INT-10 on the reference signature: every chain's last chain-index
	// entry is its shape (chain indexes 11, 6291423 and 3 in the file).
	s, err := ksi.ParseSignature(testpack.Read(t, "tlv", okSigName))
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range s.Chains() {
		if last := c.ChainIndex[len(c.ChainIndex)-1]; c.Shape() != last {
			t.Errorf("chain %d: shape %d, last chain index %d", i, c.Shape(), last)
		}
	}
}

func TestRightLinksEqual(t *testing.T) {
	a, b, c := imprintOf(ksi.SHA2_256, "a"), imprintOf(ksi.SHA2_256, "b"), imprintOf(ksi.SHA2_256, "c")
	r := func(s ksi.Imprint) ksi.CalendarLink { return ksi.CalendarLink{Left: false, Sibling: s} }
	l := func(s ksi.Imprint) ksi.CalendarLink { return ksi.CalendarLink{Left: true, Sibling: s} }
	tests := []struct {
		name string
		x, y []ksi.CalendarLink
		want bool
	}{
		{"both empty", nil, nil, true},
		{"only left links", []ksi.CalendarLink{l(a)}, []ksi.CalendarLink{l(b), l(c)}, true},
		{"same right links", []ksi.CalendarLink{r(a), r(b)}, []ksi.CalendarLink{r(a), r(b)}, true},
		{"left links interleaved differently", []ksi.CalendarLink{l(c), r(a), r(b)}, []ksi.CalendarLink{r(a), l(a), l(b), r(b), l(c)}, true},
		{"different right sibling", []ksi.CalendarLink{r(a), r(b)}, []ksi.CalendarLink{r(a), r(c)}, false},
		{"order of right links", []ksi.CalendarLink{r(a), r(b)}, []ksi.CalendarLink{r(b), r(a)}, false},
		{"extra right link", []ksi.CalendarLink{r(a)}, []ksi.CalendarLink{r(a), r(b)}, false},
		{"extra right link after lefts", []ksi.CalendarLink{r(a), l(b)}, []ksi.CalendarLink{r(a), l(b), r(c)}, false},
		{"right vs none", []ksi.CalendarLink{r(a)}, nil, false},
		{"algorithm byte differs", []ksi.CalendarLink{r(a)}, []ksi.CalendarLink{r(append(ksi.Imprint{byte(ksi.SHA3_256)}, a[1:]...))}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := ksi.RightLinksEqual(tt.x, tt.y); got != tt.want {
				t.Errorf("RightLinksEqual = %v, want %v", got, tt.want)
			}
			if got := ksi.RightLinksEqual(tt.y, tt.x); got != tt.want {
				t.Errorf("RightLinksEqual (swapped) = %v, want %v", got, tt.want)
			}
		})
	}

	// The reference signature and its extension share their right links
	// (the earlier calendar subtrees do not change as the calendar grows).
	s, err := ksi.ParseSignature(testpack.Read(t, "tlv", okSigName))
	if err != nil {
		t.Fatal(err)
	}
	ext, err := ksi.ParseSignature(testpack.Read(t, "tlv", "ok-sig-2014-04-30.1-extended.ksig"))
	if err != nil {
		t.Fatal(err)
	}
	if !ksi.RightLinksEqual(s.CalendarChain.Links, ext.CalendarChain.Links) {
		t.Errorf("reference signature and its extension have different right links")
	}
}
