package aggregator

import (
	"bytes"
	"context"
	"crypto/sha512"
	"encoding/binary"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/verifier"
)

func sha512Imprint(seed uint64) ksi.Imprint {
	s := sha512.Sum512(binary.BigEndian.AppendUint64(nil, seed))
	return append(ksi.Imprint{byte(ksi.SHA2_512)}, s[:]...)
}

// docHashes are document hashes of every algorithm the aggregator
// accepts now, one per algorithm.
func docHashes(t *testing.T, doc string) []ksi.Imprint {
	t.Helper()
	var out []ksi.Imprint
	for _, a := range []ksi.HashAlg{ksi.SHA2_256, ksi.RIPEMD160, ksi.SHA2_384, ksi.SHA2_512, ksi.SHA3_224, ksi.SHA3_256, ksi.SHA3_384, ksi.SHA3_512} {
		h, err := a.Digest([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, h)
	}
	return out
}

// clientSignature is the signature a reference client stores from the
// signature elements of an aggregation response to a request at level:
// libksi (KSI_SignatureBuilder_close → addRootLevel) and goksi
// (BuildFromAggregationResp → AdjustLevelCorrection) sort the chains,
// add the level to the first link's correction of the lowest one and
// wrap the elements in 0x800 (docs/design/formats.md#level-corrections). Written from the parsed
// model and the chain encoder, not with ksi.ShiftInputLevel, so that the
// server's arithmetic is checked by another.
func clientSignature(t *testing.T, elements [][]byte, level uint64) *ksi.Signature {
	t.Helper()
	sig, err := ksi.SignatureFromElements(elements)
	if err != nil {
		t.Fatal(err)
	}
	if level == 0 {
		return sig
	}
	low := sig.Chains()[0]
	links := append([]ksi.Link(nil), low.Links...)
	links[0].LevelCorrection += level
	c, err := ksi.NewAggregationChain(low.AggregationTime, low.ChainIndex, low.InputHash, low.Algorithm, links)
	if err != nil {
		t.Fatal(err)
	}
	out := make([][]byte, 0, len(elements))
	replaced := 0
	for _, e := range elements {
		if bytes.Equal(e, low.Raw) {
			e = c.Raw
			replaced++
		}
		out = append(out, e)
	}
	if replaced != 1 {
		t.Fatalf("the lowest chain is %d of the response's elements", replaced)
	}
	if sig, err = ksi.SignatureFromElements(out); err != nil {
		t.Fatal(err)
	}
	return sig
}

// checkPDUAnswer checks one aggregation response to a request of hash at
// level as a reference client does, and that the check could fail: the
// stored signature passes the internal policy with the request's level
// as input level (GEN-03, docs/design/formats.md#level-corrections) and fails it one level higher;
// for a level above 0 the elements as sent are relative to the request
// (first correction lowered by the level), so that without the client's
// adjustment they are not the finished signature and fail INT-01.
func checkPDUAnswer(t *testing.T, r pdu.AggregationResponse, hash ksi.Imprint, level uint64, finishedFirst uint64) {
	t.Helper()
	ctx := context.Background()
	if r.Status != 0 {
		t.Fatalf("%s at level %d: status %#x %s", hash.Alg(), level, r.Status, r.ErrorMessage)
	}
	sent, err := ksi.SignatureFromElements(r.SignatureElements)
	if err != nil {
		t.Fatal(err)
	}
	if got := sent.Chains()[0].Links[0].LevelCorrection; got != finishedFirst-level {
		t.Fatalf("%s at level %d: first correction as sent %d, want %d", hash.Alg(), level, got, finishedFirst-level)
	}
	sig := clientSignature(t, r.SignatureElements, level)
	if got := sig.Chains()[0].Links[0].LevelCorrection; got != finishedFirst {
		t.Fatalf("%s at level %d: stored first correction %d, want %d", hash.Alg(), level, got, finishedFirst)
	}
	if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: hash, InputLevel: level}); rep.Result != verifier.OK {
		t.Fatalf("%s at level %d: the client's signature fails %s %s: %s", hash.Alg(), level, rep.Rule, rep.Code, rep.Message)
	}
	if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: hash, InputLevel: level + 1}); rep.Code != verifier.GEN03 {
		t.Fatalf("%s at level %d: checked at level %d gives %s, want GEN-03", hash.Alg(), level, level+1, rep.Code)
	}
	if level > 0 {
		if rep := verifier.Verify(ctx, sent, verifier.Internal, verifier.Options{Document: hash}); rep.Code != verifier.INT01 {
			t.Fatalf("%s at level %d: the response without the client's adjustment gives %s, want INT-01", hash.Alg(), level, rep.Code)
		}
	}
}

// A PDU response is relative to the request's level at levels 0, 1, 2
// and the maximum, for document hashes of every accepted algorithm, in
// one PDU and one round; the engine's own answer (what gRPC and REST
// return) is the finished signature.
func TestPDUResponseRelativeToRequestLevel(t *testing.T) {
	up := startCalendar(t)
	e := newEngine(t, up, Config{Period: 20 * time.Millisecond})
	if e.cfg.MaxLevel != DefaultMaxLevel || DefaultMaxLevel != 20 {
		t.Fatalf("max level %d by default, want 20", e.cfg.MaxLevel)
	}
	runEngine(t, e)
	ts := httptest.NewServer(e.PDUHandler(server.DevUsers()))
	defer ts.Close()
	c := pduClient{t, ts.URL, "anon", "anon"}

	levels := []uint64{0, 1, 2, uint64(e.cfg.MaxLevel)}
	for _, lvl := range levels {
		var reqs []pdu.AggregationRequest
		for _, h := range docHashes(t, fmt.Sprintf("level %d", lvl)) {
			reqs = append(reqs, pdu.AggregationRequest{RequestID: uint64(len(reqs) + 1), Hash: h, Level: lvl, HasLevel: lvl > 0})
		}
		code, out := c.post(&pdu.AggregatorRequest{Requests: reqs, ConfigRequest: true})
		if code != http.StatusOK || len(out.Responses) != len(reqs) {
			t.Fatalf("answered %d with %d responses for %d requests", code, len(out.Responses), len(reqs))
		}
		if out.Config == nil || out.Config.MaxLevel != uint64(e.cfg.MaxLevel) || out.Config.AggregationAlgorithm != ksi.SHA2_256 {
			t.Fatalf("config %+v", out.Config)
		}
		for i, r := range out.Responses {
			if r.RequestID != reqs[i].RequestID {
				t.Fatalf("response %d has id %d", i, r.RequestID)
			}
			// The first link is the login's metadata link, at the request's level.
			checkPDUAnswer(t, r, reqs[i].Hash, reqs[i].Level, reqs[i].Level)
		}
	}
	// One level above the maximum is refused with 0x104.
	code, out := c.post(&pdu.AggregatorRequest{Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: imprint(1), Level: uint64(e.cfg.MaxLevel) + 1, HasLevel: true}}})
	if code != http.StatusOK || len(out.Responses) != 1 || out.Responses[0].Status != pdu.StatusAggrRequestTooLarge {
		t.Fatalf("level above the maximum: %d %+v", code, out.Responses)
	}

	// The engine's answer, with and without a machine id in the metadata:
	// the finished signature, verified as Tempel's SDK does.
	for _, machine := range []string{"", "gateway-7"} {
		for _, lvl := range levels {
			h := sha512Imprint(lvl)
			res := e.Sign(context.Background(), Request{Hash: h, Level: byte(lvl), Identity: Identity{ClientID: "alice", MachineID: machine}})
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			sig, err := ksi.ParseSignature(res.Signature)
			if err != nil {
				t.Fatal(err)
			}
			if got := sig.Chains()[0].Links[0].LevelCorrection; got != lvl {
				t.Fatalf("engine at level %d: first correction %d", lvl, got)
			}
			if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: h, InputLevel: lvl}); rep.Result != verifier.OK {
				t.Fatalf("engine at level %d: %s %s", lvl, rep.Code, rep.Message)
			}
			if md := sig.Metadata(); md[0].ClientID != "alice" || md[0].MachineID != machine {
				t.Fatalf("metadata %+v", md[0])
			}
		}
	}
}

// Document hashes of algorithms deprecated now (SHA-1), not implemented
// (SM3) or unknown are refused with a message naming the algorithm (and
// the date for a deprecated one): per request with 0x103 in a PDU
// (where the others of the PDU are signed), at once from Submit.
func TestRefusedHashAlgorithms(t *testing.T) {
	up := startCalendar(t)
	e := newEngine(t, up, Config{Period: 20 * time.Millisecond})
	runEngine(t, e)
	ts := httptest.NewServer(e.PDUHandler(server.DevUsers()))
	defer ts.Close()
	c := pduClient{t, ts.URL, "anon", "anon"}

	sha1, err := ksi.SHA1.Digest([]byte("old"))
	if err != nil {
		t.Fatal(err)
	}
	sm3 := append(ksi.Imprint{byte(ksi.SM3)}, make([]byte, 32)...)
	good := sha512Imprint(1)
	code, out := c.post(&pdu.AggregatorRequest{Requests: []pdu.AggregationRequest{
		{RequestID: 1, Hash: sha1}, {RequestID: 2, Hash: good, Level: 2, HasLevel: true}, {RequestID: 3, Hash: sm3}}})
	if code != http.StatusOK || len(out.Responses) != 3 {
		t.Fatalf("answered %d with %d responses", code, len(out.Responses))
	}
	for i, want := range []string{"SHA-1 is deprecated since 2016-07-01", "", "not implemented: SM3"} {
		r := out.Responses[i]
		if want == "" {
			checkPDUAnswer(t, r, good, 2, 2)
			continue
		}
		if r.Status != pdu.StatusInvalidPayload || !strings.Contains(r.ErrorMessage, want) || r.SignatureElements != nil {
			t.Errorf("request %d: status %#x %q, want 0x103 naming %q", r.RequestID, r.Status, r.ErrorMessage, want)
		}
	}

	// An unknown algorithm id is not an imprint: the PDU is malformed and
	// refused as a whole, the message naming the id.
	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: imprint(7)}}}
	raw, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	at := bytes.Index(raw, imprint(7))
	raw[at] = 0x0C
	resp, err := http.Post(ts.URL, "application/ksi-request", bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	bad, err := pdu.ParseAggregatorResponse(body.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	if bad.Error == nil || bad.Error.Status != pdu.StatusInvalidRequest || !strings.Contains(bad.Error.Message, "0x0c") {
		t.Fatalf("unknown algorithm: %+v", bad.Error)
	}

	for _, h := range []ksi.Imprint{sha1, sm3, append(ksi.Imprint{0x0C}, make([]byte, 32)...)} {
		err := e.Submit(Request{Hash: h, Identity: Identity{ClientID: "a"}}, func(Signed) {})
		if Status(err) != pdu.StatusInvalidPayload {
			t.Errorf("%x…: %v", h[:4], err)
		}
	}
}

// The max level leaves room for the levels above a request: New refuses
// one that a full round at that level would push past 255, and a full
// round at the highest level allowed is signed.
func TestMaxLevelLeavesRoomAbove(t *testing.T) {
	for _, tc := range []struct {
		queue int
		up    Upstream
		want  int
	}{
		{1_000_000, &fakeCalendar{}, 255 - 21 - 3*21},
		{1024, &fakeCalendar{}, 255 - 11 - 3*21},
		{1_000_000, &calendarUpstream{}, 255 - 21 - 21},
	} {
		if got := MaxLevelLimit(tc.queue, tc.up); got != tc.want {
			t.Errorf("queue %d: limit %d, want %d", tc.queue, got, tc.want)
		}
		if _, err := New(Config{Upstream: tc.up, MaxQueue: tc.queue, MaxLevel: byte(tc.want + 1), Logger: discard()}); err == nil || !strings.Contains(err.Error(), "max level") {
			t.Errorf("queue %d: max level %d accepted (%v)", tc.queue, tc.want+1, err)
		}
	}
	const queue = 64
	e := newEngine(t, &fakeCalendar{}, Config{MaxQueue: queue, MaxLevel: byte(MaxLevelLimit(queue, &fakeCalendar{}))})
	res := make(chan Signed, queue)
	for i := 0; i < queue; i++ {
		if err := e.Submit(Request{Hash: imprint(uint64(i)), Level: e.cfg.MaxLevel, Identity: Identity{ClientID: "a"}}, func(r Signed) { res <- r }); err != nil {
			t.Fatal(err)
		}
	}
	e.CloseRound(context.Background())
	for i := 0; i < queue; i++ {
		if r := <-res; r.Err != nil {
			t.Fatalf("a full round at level %d: %v", e.cfg.MaxLevel, r.Err)
		}
	}
	e.wg.Wait()
}
