package round_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/verifier"
)

func imprint(seed uint64) ksi.Imprint {
	s := sha256.Sum256(binary.BigEndian.AppendUint64(nil, seed))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, s[:]...)
}

func meta(t testing.TB, client string) []byte {
	t.Helper()
	seq := uint64(7)
	v, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: client, SequenceNumber: &seq})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// calendarAnswer makes upstream's part by hand: a calendar chain from the
// round root as leaf 1 of a two-leaf calendar (one right link), with a
// publication record on its root, so signatures verify internally.
func calendarAnswer(t testing.TB, root ksi.Imprint) *round.Answer {
	t.Helper()
	cal, err := ksi.NewCalendarChain(1, 1, root, []ksi.CalendarLink{{Left: false, Sibling: imprint(99)}})
	if err != nil {
		t.Fatal(err)
	}
	var h ksi.Hasher
	out, err := cal.Output(&h)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(1, out), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &round.Answer{AggregationTime: 1, Elements: append(append([]byte{}, cal.Raw...), pub.Raw...)}
}

// signAll builds a round over reqs, answers its root with calendarAnswer
// and returns every request's parsed signature.
func signAll(t *testing.T, reqs []round.Request) []*ksi.Signature {
	t.Helper()
	r, err := round.Build(ksi.SHA2_256, reqs)
	if err != nil {
		t.Fatal(err)
	}
	root, _ := r.Root()
	ans := calendarAnswer(t, root)
	var w round.Writer
	sigs := make([]*ksi.Signature, len(reqs))
	for i := range reqs {
		b, err := w.AppendSignature(nil, r, i, ans)
		if err != nil {
			t.Fatal(err)
		}
		if sigs[i], err = ksi.ParseSignature(b); err != nil {
			t.Fatalf("%d requests, request %d: %v", len(reqs), i, err)
		}
	}
	return sigs
}

func TestRoundSignaturesVerify(t *testing.T) {
	for _, n := range []int{1, 2, 3, 17, 100} {
		reqs := make([]round.Request, n)
		for i := range reqs {
			reqs[i] = round.Request{Hash: imprint(uint64(i)), Level: byte(i % 3), Meta: meta(t, "client-"+string(rune('a'+i%26)))}
		}
		for i, sig := range signAll(t, reqs) {
			rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: reqs[i].Hash, InputLevel: uint64(reqs[i].Level)})
			if rep.Result != verifier.OK {
				t.Fatalf("n=%d request %d: %s %s: %s", n, i, rep.Result, rep.Code, rep.Message)
			}
			if got := sig.Identity(); len(got) != 1 || got[0] != "client-"+string(rune('a'+i%26)) {
				t.Fatalf("identity %v", got)
			}
			// One level too high must fail GEN-03.
			rep = verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: reqs[i].Hash, InputLevel: uint64(reqs[i].Level) + 1})
			if rep.Code != verifier.GEN03 {
				t.Fatalf("level+1 gives %s, want GEN-03", rep.Code)
			}
		}
	}
}

func TestRoundWithoutMetadata(t *testing.T) {
	reqs := []round.Request{{Hash: imprint(1), Level: 4}, {Hash: imprint(2)}, {Hash: imprint(3), Level: 1}}
	for i, sig := range signAll(t, reqs) {
		if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: reqs[i].Hash, InputLevel: uint64(reqs[i].Level)}); rep.Result != verifier.OK {
			t.Fatalf("request %d: %s %s", i, rep.Code, rep.Message)
		}
	}
}

// docImprint is the imprint of doc hashed with a.
func docImprint(t testing.TB, a ksi.HashAlg, doc string) ksi.Imprint {
	t.Helper()
	h, err := a.Digest([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// A round mixes document hashes of every algorithm Tempel accepts, with
// and without metadata, at several levels: the tree hashes with SHA-256
// above them, every signature verifies against its own hash, and a
// signature checked against the same document hashed with SHA-256
// instead fails (GEN-04: the algorithm is part of what was signed).
func TestRoundMixesHashAlgorithms(t *testing.T) {
	algs := []ksi.HashAlg{ksi.SHA2_256, ksi.RIPEMD160, ksi.SHA2_384, ksi.SHA2_512, ksi.SHA3_224, ksi.SHA3_256, ksi.SHA3_384, ksi.SHA3_512}
	for _, withMeta := range []bool{true, false} {
		var reqs []round.Request
		for i := 0; i < 3*len(algs); i++ {
			r := round.Request{Hash: docImprint(t, algs[i%len(algs)], "doc"+string(rune('a'+i))), Level: byte(i % 3)}
			if withMeta {
				r.Meta = meta(t, "alice")
			}
			reqs = append(reqs, r)
		}
		for i, sig := range signAll(t, reqs) {
			if !sig.DocumentHash().Equal(reqs[i].Hash) || sig.Chains()[0].Algorithm != ksi.SHA2_256 {
				t.Fatalf("request %d: document hash %s, aggregation %s", i, sig.DocumentHash(), sig.Chains()[0].Algorithm)
			}
			rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: reqs[i].Hash, InputLevel: uint64(reqs[i].Level)})
			if rep.Result != verifier.OK {
				t.Fatalf("meta %v, request %d (%s): %s %s", withMeta, i, reqs[i].Hash.Alg(), rep.Code, rep.Message)
			}
			if reqs[i].Hash.Alg() != ksi.SHA2_256 {
				other := docImprint(t, ksi.SHA2_256, "doc"+string(rune('a'+i)))
				if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: other}); rep.Code != verifier.GEN04 {
					t.Fatalf("request %d against its SHA-256: %s, want GEN-04", i, rep.Code)
				}
			}
		}
	}
}

func TestRoundRejectsMalformedHash(t *testing.T) {
	for name, h := range map[string]ksi.Imprint{"unknown algorithm": append(ksi.Imprint{0x0C}, make([]byte, 32)...),
		"SHA-512 of 32 bytes": append(ksi.Imprint{byte(ksi.SHA2_512)}, make([]byte, 32)...), "empty": nil} {
		if _, err := round.Build(ksi.SHA2_256, []round.Request{{Hash: imprint(1)}, {Hash: h, Meta: meta(t, "a")}}); err == nil {
			t.Errorf("%s: round built", name)
		}
	}
}

// roundOf100k builds a round of 100,000 requests with metadata, as the
// aggregator's rounds are, and its answer.
func roundOf100k(b *testing.B) (*round.Round, *round.Answer) {
	const n = 100_000
	reqs := make([]round.Request, n)
	m := meta(b, "bench")
	for i := range reqs {
		reqs[i] = round.Request{Hash: imprint(uint64(i)), Meta: m}
	}
	r, err := round.Build(ksi.SHA2_256, reqs)
	if err != nil {
		b.Fatal(err)
	}
	root, _ := r.Root()
	ans := calendarAnswer(b, root)
	ans.ChainIndex = []uint64{3, 5} // as below a parent aggregator
	return r, ans
}

// BenchmarkWriteRound100k: every signature of a built round of 100,000
// requests, on one goroutine: the per-request part of the round's work.
func BenchmarkWriteRound100k(b *testing.B) {
	r, ans := roundOf100k(b)
	var w round.Writer
	b.ReportAllocs()
	for b.Loop() {
		for i := range r.Len() {
			if _, err := w.AppendSignature(nil, r, i, ans); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(r.Len()), "ns/sig")
}

// BenchmarkJoin100k: a client joining 100,000 legs with their round's
// shared part (what a shared-round stream's reader does).
func BenchmarkJoin100k(b *testing.B) {
	r, ans := roundOf100k(b)
	var w round.Writer
	type leg struct {
		hash  ksi.Imprint
		shape uint64
		links []byte
	}
	legs := make([]leg, r.Len())
	for i := range legs {
		links, shape, err := w.AppendLeg(nil, r, i)
		if err != nil {
			b.Fatal(err)
		}
		legs[i] = leg{imprint(uint64(i)), shape, links}
	}
	b.ReportAllocs()
	for b.Loop() {
		for _, l := range legs {
			if _, err := round.AppendJoined(nil, ans, ksi.SHA2_256, l.hash, l.shape, l.links); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/float64(r.Len()), "ns/sig")
}
