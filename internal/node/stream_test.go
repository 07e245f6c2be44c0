package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/round"
	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// SignBatchStream in the shared-round form, against a real all-in-one
// node: every request first gets its leg, then its round's shared part
// arrives once; the assembled signatures verify against the calendar's
// key, and requests sent without the flag on the same stream get complete
// signatures.
func TestSignBatchStreamSharedRounds(t *testing.T) {
	cal := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := tempelv1.NewSignerClient(dial(t, cal.addr)).SignBatchStream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	const n = 300
	hash := func(i uint64) ksi.Imprint { return docHash(fmt.Sprint("shared-", i)) }
	send := func(from, to uint64, shared bool) {
		var b tempelv1.SignBatch
		for i := from; i < to; i++ {
			b.Requests = append(b.Requests, &tempelv1.SignRequest{RequestId: i, Hash: hash(i), Level: uint32(i % 3)})
		}
		b.SharedRounds = shared
		if err := st.Send(&b); err != nil {
			t.Fatal(err)
		}
	}
	send(0, n, true)
	send(n, n+10, false)
	if err := st.CloseSend(); err != nil {
		t.Fatal(err)
	}

	type leg struct {
		round, shape uint64
		links        []byte
	}
	legs := map[uint64]leg{}
	rounds := map[uint64]*tempelv1.SharedRound{}
	sigs := map[uint64][]byte{}
	for {
		b, err := st.Recv()
		if err != nil {
			break // io.EOF once every request is answered
		}
		for _, r := range b.Responses {
			switch {
			case r.Status != 0:
				t.Fatalf("request %d: status %#x %s", r.RequestId, r.Status, r.ErrorMessage)
			case r.Round != 0:
				if r.RequestId >= n || len(r.Signature) != 0 || len(r.Leg) == 0 {
					t.Fatalf("request %d: a leg where a full signature was asked, or an empty leg", r.RequestId)
				}
				if _, ok := rounds[r.Round]; ok {
					t.Fatalf("request %d: leg after its round's shared part", r.RequestId)
				}
				legs[r.RequestId] = leg{r.Round, r.Shape, r.Leg}
			default:
				sigs[r.RequestId] = r.Signature
			}
		}
		for _, p := range b.Rounds {
			if _, ok := rounds[p.Id]; ok {
				t.Fatalf("round %d sent twice", p.Id)
			}
			if p.Status != 0 {
				t.Fatalf("round %d failed: %#x %s", p.Id, p.Status, p.ErrorMessage)
			}
			rounds[p.Id] = p
		}
	}
	if len(legs) != n || len(sigs) != 10 {
		t.Fatalf("got %d legs and %d full signatures, want %d and 10", len(legs), len(sigs), n)
	}
	for id, l := range legs {
		p, ok := rounds[l.round]
		if !ok {
			t.Fatalf("request %d: round %d never sent", id, l.round)
		}
		ans := &round.Answer{AggregationTime: p.AggregationTime, ChainIndex: p.ChainIndex, Elements: p.Elements}
		if sigs[id], err = round.AppendJoined(nil, ans, ksi.HashAlg(p.Algorithm), hash(id), l.shape, l.links); err != nil {
			t.Fatal(err)
		}
	}
	pf := trustedPubFile(t, cal)
	for id, raw := range sigs {
		sig, err := ksi.ParseSignature(raw)
		if err != nil {
			t.Fatalf("request %d: %v", id, err)
		}
		rep := verifier.Verify(context.Background(), sig, verifier.KeyBased, verifier.Options{Document: hash(id), InputLevel: id % 3, PublicationsFile: pf})
		if rep.Result != verifier.OK {
			t.Fatalf("request %d: %s %s: %s", id, rep.Result, rep.Code, rep.Message)
		}
	}
}
