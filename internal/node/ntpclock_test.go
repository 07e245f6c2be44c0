package node

import (
	"context"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/internal/ntpcheck/ntptest"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// newNTPResponder is an NTP server on loopback UDP for the test.
func newNTPResponder(t *testing.T) *ntptest.Server {
	t.Helper()
	s, err := ntptest.Start()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// TestNTPClockCheck runs a node whose clock is checked against a real
// NTP responder: in bound it is ready and signs; with the responder 2 s
// ahead it is not ready and refuses to sign (gRPC UNAVAILABLE, REST 503)
// naming the offset and the server; back in bound it signs again.
func TestNTPClockCheck(t *testing.T) {
	ntp := newNTPResponder(t)
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), NTPServer: ntp.Addr(), NTPInterval: 200 * time.Millisecond})
	signer := tempelv1.NewSignerClient(dial(t, n.addr))
	sign := func(doc string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := signer.Sign(ctx, &tempelv1.SignRequest{Hash: docHash(doc)})
		return err
	}
	get := func(path string) (int, string) { return getText(t, n.addr, path) }
	waitReadyz := func(want int, text string) { t.Helper(); waitReadyzOn(t, n.addr, want, text) }
	offsetMetric := func() float64 {
		_, body := get("/metrics")
		m := regexp.MustCompile(`(?m)^tempel_clock_offset_seconds (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no tempel_clock_offset_seconds in /metrics")
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}

	waitReadyz(http.StatusOK, "ready")
	if err := sign("in bound"); err != nil {
		t.Fatalf("signing with the clock in bound: %v", err)
	}
	if v := offsetMetric(); v < -0.1 || v > 0.1 {
		t.Errorf("tempel_clock_offset_seconds %v in bound, want about 0", v)
	}

	ntp.SetOffset(2 * time.Second)
	reason := "clock: offset +2"
	waitReadyz(http.StatusServiceUnavailable, reason)
	_, body := get("/readyz")
	if !strings.Contains(body, "against ntp "+ntp.Addr()+" exceeds 500ms") {
		t.Errorf("readyz %q does not name the server and the bound", body)
	}
	begin := time.Now()
	err := sign("skewed")
	if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), reason) {
		t.Fatalf("signing with the clock 2 s off: %v, want UNAVAILABLE with %q", err, reason)
	}
	if took := time.Since(begin); took > 2*time.Second {
		t.Errorf("refusal took %s: it should come at once", took)
	}
	resp, err := http.Post("http://"+n.addr+"/v1/sign", "application/json",
		strings.NewReader(`{"hash":"SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), reason) {
		t.Fatalf("REST signing with the clock 2 s off: %d %s, want 503 with %q", resp.StatusCode, b, reason)
	}
	if v := offsetMetric(); v < 1.9 || v > 2.1 {
		t.Errorf("tempel_clock_offset_seconds %v skewed, want about 2", v)
	}
	// The KSI PDU interface refuses too, with its status for an
	// upstream that does not answer.
	out := pduSign(t, n.addr)
	if len(out.Responses) != 1 || out.Responses[0].Status != pdu.StatusUpstreamError || !strings.Contains(out.Responses[0].ErrorMessage, reason) {
		t.Fatalf("PDU with the clock 2 s off: %+v, want status 0x300 with %q", out.Responses, reason)
	}

	ntp.SetOffset(0)
	waitReadyz(http.StatusOK, "ready")
	if err := sign("back in bound"); err != nil {
		t.Fatalf("signing with the clock back in bound: %v", err)
	}

	// Silence: signing goes on until the last answer is older than
	// NTPStale (5 intervals), then stops.
	ntp.Mute(true)
	waitReadyz(http.StatusServiceUnavailable, "clock: no answer from ntp "+ntp.Addr()+" for ")
	if err := sign("unchecked"); status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "stale after 1s") {
		t.Fatalf("signing with the clock unchecked: %v, want UNAVAILABLE, stale", err)
	}
	ntp.Mute(false)
	waitReadyz(http.StatusOK, "ready")
}

// TestNTPClockCheckNoAnswer: a node whose NTP server never answers does
// not sign, and says so; failures are counted.
func TestNTPClockCheckNoAnswer(t *testing.T) {
	silent, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	defer silent.Close()
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), NTPServer: silent.LocalAddr().String(), NTPInterval: 100 * time.Millisecond})
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := http.Get("http://" + n.addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if regexp.MustCompile(`(?m)^tempel_clock_check_failures_total [1-9]`).Match(b) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no failure counted: %s", regexp.MustCompile(`(?m)^tempel_clock.*$`).FindAll(b, -1))
		}
		time.Sleep(20 * time.Millisecond)
	}
	resp, err := http.Get("http://" + n.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(b), "clock: no answer yet from ntp "+silent.LocalAddr().String()) {
		t.Fatalf("readyz %d %q, want 503 naming the silent server", resp.StatusCode, b)
	}
}

// TestNTPClockCheckNeedsCalendar: an aggregator takes its time from its
// parent, so checking its clock is refused rather than silently ignored.
func TestNTPClockCheckNeedsCalendar(t *testing.T) {
	_, err := New(Config{Role: RoleAggregator, Upstream: "127.0.0.1:1", DataDir: t.TempDir(), NTPServer: "127.0.0.1:123", Logger: quiet()})
	if err == nil || !strings.Contains(err.Error(), "--ntp-server needs a calendar") {
		t.Fatalf("aggregator with --ntp-server: %v", err)
	}
}
