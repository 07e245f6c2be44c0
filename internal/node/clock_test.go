package node

import (
	"context"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// steppedClock is the wall clock moved by an offset that a test steps.
type steppedClock struct{ offset atomic.Int64 }

func (c *steppedClock) Now() time.Time       { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *steppedClock) step(d time.Duration) { c.offset.Add(int64(d)) }

// TestClockStepBack steps a running node's clock back 10 s: readiness
// says it waits for the clock, signing fails at once (gRPC UNAVAILABLE,
// PDU 0x300) instead of waiting, and when the clock has caught up the
// calendar goes on with no second appended twice and none missing.
func TestClockStepBack(t *testing.T) {
	clock := &steppedClock{}
	dir := t.TempDir()
	n := start(t, Config{Role: RoleAll, DataDir: dir, Now: clock.Now})
	signer := tempelv1.NewSignerClient(dial(t, n.addr))
	sign := func() (*tempelv1.SignResponse, error) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		return signer.Sign(ctx, &tempelv1.SignRequest{Hash: docHash("before")})
	}
	first, err := sign()
	if err != nil {
		t.Fatal(err)
	}
	readyz := func() (int, string) { return getText(t, n.addr, "/readyz") }
	waitReadyz := func(want int, text string) { t.Helper(); waitReadyzOn(t, n.addr, want, text) }

	clock.step(-10 * time.Second)
	waitReadyz(http.StatusServiceUnavailable, "waiting for the clock (")
	// 10 s behind the calendar's last second, or 9 when the step came
	// before the previous second was closed (its grace period).
	if _, body := readyz(); !strings.Contains(body, "(10 s behind") && !strings.Contains(body, "(9 s behind") {
		t.Fatalf("readyz %q, want 9 or 10 s behind", body)
	}
	begin := time.Now()
	_, err = sign()
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("signing with the clock 10 s behind: %v, want UNAVAILABLE", err)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Fatalf("refusal took %s: it should not wait for the clock", took)
	}
	// The KSI PDU interface says the same with its status.
	out := pduSign(t, n.addr)
	if len(out.Responses) != 1 || out.Responses[0].Status != pdu.StatusUpstreamError {
		t.Fatalf("PDU with the clock behind: %+v, want status 0x300", out.Responses)
	}

	// The clock catches up (here: steps forward again).
	clock.step(10 * time.Second)
	waitReadyz(http.StatusOK, "ready")
	second, err := sign()
	if err != nil {
		t.Fatalf("after the clock caught up: %v", err)
	}
	if second.AggregationTime <= first.AggregationTime {
		t.Fatalf("signed at %d after %d", second.AggregationTime, first.AggregationTime)
	}
	n.stop()
	st, err := calendar.OpenStore(filepath.Join(dir, "calendar"), calendar.StoreOptions{ReadOnly: true, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	// Check recomputes every node from the leaves: a second appended twice
	// or skipped would not add up.
	if err := st.Check(); err != nil {
		t.Fatal(err)
	}
	if _, err := st.Leaf(second.AggregationTime); err != nil {
		t.Fatalf("the second signed after the step: %v", err)
	}
}

// pduSign asks the node to sign one hash over KSI PDU v2 (HTTP) as anon.
func pduSign(t *testing.T, addr string) *pdu.AggregatorResponse {
	t.Helper()
	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.AggregationRequest{{RequestID: 7, Hash: docHash("pdu")}}}
	raw, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+addr+"/gt-signingservice", "application/ksi-request", strings.NewReader(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	out, err := pdu.ParseAggregatorResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// getText GETs path from the node at addr and returns the status code and
// the body.
func getText(t *testing.T, addr, path string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// waitReadyzOn polls /readyz of the node at addr, for up to 15 s, until it
// answers want with text in its body.
func waitReadyzOn(t *testing.T, addr string, want int, text string) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, body := getText(t, addr, "/readyz")
		if code == want && strings.Contains(body, text) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz %d %q, want %d with %q", code, body, want, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
