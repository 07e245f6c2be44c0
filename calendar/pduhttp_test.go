package calendar

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
	"github.com/tempel-ksi/tempel/verifier"
)

// pduExtender is a verifier.Extender that asks over KSI PDU v2 HTTP.
type pduExtender struct {
	t   *testing.T
	url string
	key []byte
}

func (e pduExtender) post(req *pdu.ExtenderRequest) *pdu.ExtenderResponse {
	e.t.Helper()
	b, err := req.Encode(ksi.SHA2_256, e.key)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.postRaw(b)
}

func (e pduExtender) postRaw(b []byte) *pdu.ExtenderResponse {
	e.t.Helper()
	resp, err := http.Post(e.url, "application/ksi-request", bytes.NewReader(b))
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	out, err := pdu.ParseExtenderResponse(body)
	if err != nil {
		e.t.Fatalf("response: %v", err)
	}
	return out
}

func (e pduExtender) Extend(_ context.Context, aggr, pub uint64) (*ksi.CalendarChain, error) {
	out := e.post(&pdu.ExtenderRequest{
		Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.ExtendRequest{{RequestID: 1, AggregationTime: aggr, PublicationTime: pub, HasPublicationTime: pub != 0}},
	})
	if err := out.Verify(e.key); err != nil {
		e.t.Fatalf("response HMAC: %v", err)
	}
	el, err := tlv.ReadOne(out.Responses[0].CalendarChain)
	if err != nil {
		return nil, err
	}
	return ksi.ParseCalendarChain(el)
}

func TestExtenderPDU(t *testing.T) {
	st := openTest(t, t.TempDir())
	defer st.Close()
	clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
	svc, _ := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger()})
	res := submitMany(svc, 3, 0)
	waitPending(t, svc, 3)
	clock.Set(time.Unix(1_800_000_010, 100e6))
	if err := svc.closeDue(); err != nil {
		t.Fatal(err)
	}
	r := <-res
	sig, err := ksi.ParseSignature(r.sig)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(svc.ExtenderPDUHandler(server.DevUsers()))
	defer ts.Close()
	ext := pduExtender{t, ts.URL, []byte("anon")}

	// Extend to a later second and verify against that root as a user
	// publication.
	root, err := st.Root(1_800_000_007)
	if err != nil {
		t.Fatal(err)
	}
	up := ksi.NewPublishedData(1_800_000_007, root)
	rep := verifier.Verify(context.Background(), sig, verifier.UserPublicationBased, verifier.Options{
		Document: r.hash, InputLevel: uint64(r.level), UserPublication: &up, Extender: ext, ExtendingAllowed: true})
	if rep.Result != verifier.OK {
		t.Fatalf("user publication via PDU extender: %s %s %s", rep.Result, rep.Code, rep.Message)
	}
	// The calendar policy asks the same extender.
	if rep := verifier.Verify(context.Background(), sig, verifier.CalendarBased, verifier.Options{Extender: ext}); rep.Result != verifier.OK {
		t.Fatalf("calendar policy: %s %s", rep.Code, rep.Message)
	}

	for _, tc := range []struct {
		name      string
		aggr, pub uint64
		status    uint64
	}{
		{"too old", 1_799_999_999, 1_800_000_005, pdu.StatusExtTimeTooOld},
		{"too new", 1_800_000_010, 1_800_000_010, pdu.StatusExtTimeTooNew},
		{"backwards", 1_800_000_005, 1_800_000_004, pdu.StatusExtInvalidTimeRange},
		{"future", 1_800_000_000, 1_900_000_000, pdu.StatusExtTimeInFuture},
	} {
		out := ext.post(&pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
			Requests: []pdu.ExtendRequest{{RequestID: 9, AggregationTime: tc.aggr, PublicationTime: tc.pub, HasPublicationTime: true}}})
		if got := out.Responses[0].Status; got != tc.status {
			t.Errorf("%s: status %#x, want %#x", tc.name, got, tc.status)
		}
	}
	// Configuration: calendar first and last time.
	out := ext.post(&pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, ConfigRequest: true})
	if c := out.Config; c == nil || c.CalendarFirstTime != 1_800_000_000 || c.CalendarLastTime != 1_800_000_009 {
		t.Fatalf("config %+v", out.Config)
	}
	// Authentication failures look alike, malformed PDUs get 0x101.
	good, _ := (&pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, ConfigRequest: true}).Encode(ksi.SHA2_256, []byte("anon"))
	badKey, _ := (&pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, ConfigRequest: true}).Encode(ksi.SHA2_256, []byte("wrong"))
	badUser, _ := (&pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "mallory"}}, ConfigRequest: true}).Encode(ksi.SHA2_256, []byte("anon"))
	var msgs []string
	for _, b := range [][]byte{badKey, badUser} {
		out := ext.postRaw(b)
		if out.Error == nil || out.Error.Status != pdu.StatusAuthFailure {
			t.Fatalf("auth failure answered %+v", out.Error)
		}
		msgs = append(msgs, out.Error.Message)
	}
	if msgs[0] != msgs[1] {
		t.Errorf("auth failures differ: %q vs %q", msgs[0], msgs[1])
	}
	if out := ext.postRaw(good[:len(good)-3]); out.Error == nil || out.Error.Status != pdu.StatusInvalidRequest {
		t.Fatalf("truncated PDU answered %+v", out.Error)
	}
}
