package calendar

import (
	"bytes"
	"fmt"
	"log/slog"
	"math/bits"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// counterSum sums the counter family name gathered from reg.
func counterSum(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, f := range fams {
		if f.GetName() == name {
			for _, m := range f.GetMetric() {
				sum += m.GetCounter().GetValue()
			}
		}
	}
	return sum
}

// appendSeconds appends leaves for seconds first..last.
func appendSeconds(t *testing.T, st *Store, first, last uint64) {
	t.Helper()
	leaves := make([]ksi.Imprint, 0, last-first+1)
	for s := first; s <= last; s++ {
		leaves = append(leaves, leafFor(s))
	}
	if _, err := st.AppendRange(first, leaves, true); err != nil {
		t.Fatal(err)
	}
}

// postExtender posts a request PDU and returns the HTTP status and the
// authenticated response.
func postExtender(t *testing.T, url string, req *pdu.ExtenderRequest) (int, *pdu.ExtenderResponse) {
	t.Helper()
	req.Header = pdu.Header{LoginID: "anon"}
	b, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Post(url, "application/ksi-request", bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body bytes.Buffer
	body.ReadFrom(resp.Body)
	out, err := pdu.ParseExtenderResponse(body.Bytes())
	if err != nil {
		t.Fatalf("response (%s): %v", resp.Status, err)
	}
	if err := out.Verify([]byte("anon")); err != nil {
		t.Fatalf("response HMAC: %v", err)
	}
	return resp.StatusCode, out
}

// The extender advertises how many requests one PDU may carry; that many
// are answered in full, one more is refused with 0x103 before any chain
// is computed.
func TestExtenderPDUAdvertisedMaximum(t *testing.T) {
	const first, last = 1_800_000_000, 1_800_000_099
	st := openTest(t, t.TempDir())
	defer st.Close()
	appendSeconds(t, st, first, last)
	reg := prometheus.NewRegistry()
	clock := &fakeClock{t: time.Unix(last+1, 0)}
	svc, err := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger(), Metrics: NewMetrics(reg)})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(svc.ExtenderPDUHandler(server.DevUsers()))
	defer ts.Close()

	_, out := postExtender(t, ts.URL, &pdu.ExtenderRequest{ConfigRequest: true})
	if out.Config == nil || !out.Config.HasMaxRequests || out.Config.CalendarLastTime != last {
		t.Fatalf("config %+v", out.Config)
	}
	n := int(out.Config.MaxRequests)
	if want := maxExtendRequests("anon", last); n != want || n < 1 {
		t.Fatalf("advertised max requests %d, want %d", n, want)
	}
	requests := func(k int) []pdu.ExtendRequest {
		rs := make([]pdu.ExtendRequest, k)
		for i := range rs {
			rs[i] = pdu.ExtendRequest{RequestID: ^uint64(0) - uint64(i), AggregationTime: first + uint64(i)%(last-first)}
		}
		return rs
	}

	code, out := postExtender(t, ts.URL, &pdu.ExtenderRequest{Requests: requests(n + 1)})
	if code != http.StatusRequestEntityTooLarge || out.Error == nil || out.Error.Status != pdu.StatusInvalidPayload || len(out.Responses) != 0 {
		t.Fatalf("%d requests answered %d %+v with %d responses", n+1, code, out.Error, len(out.Responses))
	}
	if msg := out.Error.Message; !strings.Contains(msg, fmt.Sprintf("%d extension requests", n+1)) || !strings.Contains(msg, fmt.Sprintf("at most %d", n)) {
		t.Errorf("refusal message %q does not name the count and the limit", msg)
	}
	if c := counterSum(t, reg, "tempel_calendar_extend_requests_total"); c != 0 {
		t.Fatalf("%v extensions computed for a refused PDU", c)
	}

	reqs := requests(n)
	code, out = postExtender(t, ts.URL, &pdu.ExtenderRequest{Requests: reqs})
	if code != http.StatusOK || out.Error != nil || len(out.Responses) != n {
		t.Fatalf("%d requests answered %d, error %+v, %d responses", n, code, out.Error, len(out.Responses))
	}
	root, err := st.Root(last)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range out.Responses {
		if r.Status != 0 || r.RequestID != reqs[i].RequestID {
			t.Fatalf("response %d: id %d status %#x %s", i, r.RequestID, r.Status, r.ErrorMessage)
		}
		el, err := tlv.ReadOne(r.CalendarChain)
		if err != nil {
			t.Fatal(err)
		}
		ch, err := ksi.ParseCalendarChain(el)
		if err != nil {
			t.Fatal(err)
		}
		var h ksi.Hasher
		if out, err := ch.Output(&h); err != nil || !out.Equal(root) || ch.AggregationTime != reqs[i].AggregationTime {
			t.Fatalf("chain %d does not lead from %d to the root of %d: %v", i, reqs[i].AggregationTime, last, err)
		}
	}
	if c := counterSum(t, reg, "tempel_calendar_extend_requests_total"); c != float64(n) {
		t.Fatalf("%v extensions computed, want %d", c, n)
	}
	t.Logf("max extension requests per PDU %d", n)
}

// Calendar chains stay within the bound the extender's limit rests on:
// at most bits.Len(p+1) links to the root of second p, 32 up to 2^32-1,
// with the bound reached.
func TestCalendarChainsWithinTheBound(t *testing.T) {
	const first, last = 1<<32 - 64, 1<<32 - 1
	st := openTest(t, t.TempDir())
	defer st.Close()
	appendSeconds(t, st, first, last)
	longest := 0
	for p := uint64(first); p <= last; p++ {
		for tt := uint64(first); tt <= p; tt++ {
			ch, err := st.Chain(tt, p)
			if err != nil {
				t.Fatal(err)
			}
			if len(ch.Links) > bits.Len64(p+1) || len(ch.Raw) > calendarChainMax(p) {
				t.Fatalf("chain %d..%d: %d links, %d bytes; bound %d links, %d bytes", tt, p, len(ch.Links), len(ch.Raw), bits.Len64(p+1), calendarChainMax(p))
			}
			longest = max(longest, len(ch.Links))
		}
	}
	if longest != calendarLinksBefore2106 {
		t.Fatalf("longest chain %d links, want %d", longest, calendarLinksBefore2106)
	}
}

// syncBuffer is a log sink safe for concurrent writers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// Should the answers outgrow one PDU after all, those that fit are kept
// in order, the rest get 0x200, and the response still encodes.
func TestExtenderFitPDU(t *testing.T) {
	var logs syncBuffer
	svc := &Service{log: slog.New(slog.NewTextHandler(&logs, nil))}
	chain := func() []byte {
		b := tlv.NewBuilder(nil)
		b.Bin(ksi.TypeCalendarChain, make([]byte, 30_000))
		out, _ := b.Bytes()
		return out
	}
	resp := &pdu.ExtenderResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Config: &pdu.Config{MaxRequests: 3, HasMaxRequests: true}}
	for i := 0; i < 3; i++ {
		resp.Responses = append(resp.Responses, pdu.ExtendResponse{RequestID: uint64(i), CalendarChain: chain(), CalendarLastTime: 9, HasCalendarLastTime: true})
	}
	resp.Responses = append(resp.Responses, pdu.ExtendResponse{RequestID: 3, Status: pdu.StatusExtTimeTooNew, ErrorMessage: "too new"})
	svc.fitPDU(resp, ksi.SHA2_512, 9)
	b, err := resp.Encode(ksi.SHA2_512, []byte("anon"))
	if err != nil {
		t.Fatalf("response still does not encode: %v", err)
	}
	out, err := pdu.ParseExtenderResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	for i, r := range out.Responses {
		want := uint64(0)
		switch i {
		case 2:
			want = pdu.StatusInternalError
		case 3:
			want = pdu.StatusExtTimeTooNew
		}
		if r.RequestID != uint64(i) || r.Status != want || (want == 0) != (r.CalendarChain != nil) {
			t.Errorf("response %d: id %d status %#x chain %v", i, r.RequestID, r.Status, r.CalendarChain != nil)
		}
	}
	if !strings.Contains(logs.String(), "level=ERROR msg=\"calendar: extension requests could not be answered") {
		t.Errorf("no ERROR log:\n%s", logs.String())
	}
}
