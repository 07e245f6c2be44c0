package round_test

import (
	"bytes"
	"context"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/verifier"
)

// legsOf builds a round over reqs and returns it with every request's leg,
// named by ids from first.
func legsOf(t *testing.T, reqs []round.Request, first uint64) (*round.Round, []round.Leg) {
	t.Helper()
	r, err := round.Build(ksi.SHA2_256, reqs)
	if err != nil {
		t.Fatal(err)
	}
	var w round.Writer
	legs := make([]round.Leg, len(reqs))
	for i := range reqs {
		links, shape, err := w.AppendLeg(nil, r, i)
		if err != nil {
			t.Fatal(err)
		}
		legs[i] = round.Leg{ID: first + uint64(i), Hash: reqs[i].Hash, Shape: shape, Links: links}
	}
	return r, legs
}

// Legs of two rounds arrive interleaved; each round's shared part joins
// exactly its own legs, in the order they came, into the signatures the
// round's Writer makes in one go, and they verify. A failed round's legs
// are failed, and a round with no legs waiting calls nothing.
func TestJoinerMatchesLegsToRounds(t *testing.T) {
	var reqsA, reqsB []round.Request
	for i := range 7 {
		reqsA = append(reqsA, round.Request{Hash: imprint(uint64(i)), Level: byte(i % 3), Meta: meta(t, "a")})
		reqsB = append(reqsB, round.Request{Hash: imprint(uint64(100 + i)), Level: byte(i % 2)})
	}
	ra, legsA := legsOf(t, reqsA, 0)
	_, legsB := legsOf(t, reqsB, 100)
	var j round.Joiner
	for i := range legsA {
		j.Add(1, legsA[i])
		j.Add(2, legsB[i])
	}
	if j.Len() != len(legsA)+len(legsB) {
		t.Fatalf("%d legs waiting, want %d", j.Len(), len(legsA)+len(legsB))
	}
	root, _ := ra.Root()
	ans := calendarAnswer(t, root)
	var w round.Writer
	next := 0
	n := j.Join(1, ksi.SHA2_256, ans, func(l *round.Leg, sig []byte, err error) {
		if err != nil {
			t.Fatalf("leg %d: %v", l.ID, err)
		}
		if l.ID != uint64(next) {
			t.Fatalf("leg %d joined, want %d: a leg of another round, or out of order", l.ID, next)
		}
		want, err := w.AppendSignature(nil, ra, next, ans)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(sig, want) {
			t.Fatalf("leg %d: joined signature differs from the round's own", l.ID)
		}
		parsed, err := ksi.ParseSignature(sig)
		if err != nil {
			t.Fatal(err)
		}
		opts := verifier.Options{Document: reqsA[next].Hash, InputLevel: uint64(reqsA[next].Level)}
		if rep := verifier.Verify(context.Background(), parsed, verifier.Internal, opts); rep.Result != verifier.OK {
			t.Fatalf("leg %d: %s %s", l.ID, rep.Code, rep.Message)
		}
		next++
	})
	if n != len(legsA) || next != len(legsA) || j.Len() != len(legsB) {
		t.Fatalf("joined %d (called %d), %d still waiting; want %d and %d", n, next, j.Len(), len(legsA), len(legsB))
	}
	if n := j.Join(1, ksi.SHA2_256, ans, func(*round.Leg, []byte, error) { t.Fatal("round 1 joined twice") }); n != 0 {
		t.Fatalf("round 1 again took %d legs", n)
	}
	var failed []uint64
	if n := j.Fail(2, func(l *round.Leg) { failed = append(failed, l.ID) }); n != len(legsB) || len(failed) != n || failed[0] != 100 || j.Len() != 0 {
		t.Fatalf("failing round 2 took %d legs: %v, %d left", n, failed, j.Len())
	}
}

// A leg that cannot make a signature (a hash longer than any imprint) gets
// the error and no bytes; its neighbours are still joined.
func TestJoinerReportsUnencodableLeg(t *testing.T) {
	r, legs := legsOf(t, []round.Request{{Hash: imprint(1), Meta: meta(t, "a")}, {Hash: imprint(2), Meta: meta(t, "a")}}, 1)
	root, _ := r.Root()
	ans := calendarAnswer(t, root)
	var j round.Joiner
	j.Add(5, legs[0])
	bad := legs[1]
	bad.Hash = make(ksi.Imprint, 300)
	j.Add(5, bad)
	got := map[uint64]error{}
	j.Join(5, ksi.SHA2_256, ans, func(l *round.Leg, sig []byte, err error) {
		if (err == nil) == (sig == nil) {
			t.Fatalf("leg %d: signature %d bytes with error %v", l.ID, len(sig), err)
		}
		got[l.ID] = err
	})
	if len(got) != 2 || got[1] != nil || got[2] == nil {
		t.Fatalf("results %v: want leg 1 signed, leg 2 refused", got)
	}
}
