package round_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"testing"

	"github.com/tempel-ksi/tempel/internal/round"
	"github.com/tempel-ksi/tempel/ksi"
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
