package aggregator

import (
	"bytes"
	"context"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// servePDU runs the PDU handler for reqs (user anon) with ctx on its own
// goroutine; the recorder is complete when done is closed.
func servePDU(t *testing.T, e *Engine, ctx context.Context, reqs ...pdu.AggregationRequest) (w *httptest.ResponseRecorder, done chan struct{}) {
	t.Helper()
	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, Requests: reqs}
	raw, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequestWithContext(ctx, "POST", "/gt-signingservice", bytes.NewReader(raw))
	w = httptest.NewRecorder()
	done = make(chan struct{})
	go func() { defer close(done); e.PDUHandler(server.DevUsers()).ServeHTTP(w, r) }()
	return w, done
}

// A PDU's requests are answered together, a refused one with its status.
func TestPDURequestsTakeTurns(t *testing.T) {
	e := newEngine(t, &fakeCalendar{}, Config{})
	e.turns.max = time.Hour // a request not picked up would hold round 2
	w, done := servePDU(t, e, context.Background(),
		pdu.AggregationRequest{RequestID: 1, Hash: imprint(1)},
		pdu.AggregationRequest{RequestID: 2, Hash: imprint(2), Level: 300, HasLevel: true},
		pdu.AggregationRequest{RequestID: 3, Hash: imprint(3)})
	waitFor(t, "the PDU's requests queued", func() bool { return e.QueueLen() == 2 })
	second := twoRounds(t, e, func() {})
	<-done
	out, err := pdu.ParseAggregatorResponse(w.Body.Bytes())
	if err != nil {
		t.Fatalf("PDU response (%d): %v", w.Code, err)
	}
	if len(out.Responses) != 3 || out.Responses[0].Status != 0 || out.Responses[1].Status == 0 || out.Responses[2].Status != 0 {
		t.Fatalf("PDU responses %+v", out.Responses)
	}
	if res := awaitResult(t, "round 2", second); res.Err != nil {
		t.Fatal(res.Err)
	}
	e.wg.Wait()
}

// A PDU client that goes away before its round is answered does not hold
// the next round.
func TestPDUClientGoneDoesNotHoldTheTurn(t *testing.T) {
	e := newEngine(t, &fakeCalendar{}, Config{})
	e.turns.max = time.Hour
	ctx, cancel := context.WithCancel(context.Background())
	_, done := servePDU(t, e, ctx,
		pdu.AggregationRequest{RequestID: 1, Hash: imprint(1)},
		pdu.AggregationRequest{RequestID: 2, Hash: imprint(2)})
	waitFor(t, "the PDU's requests queued", func() bool { return e.QueueLen() == 2 })
	cancel()
	<-done
	second := twoRounds(t, e, func() {})
	if res := awaitResult(t, "round 2", second); res.Err != nil {
		t.Fatal(res.Err)
	}
	e.wg.Wait()
}
