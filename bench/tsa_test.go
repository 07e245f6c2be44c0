package bench

import (
	"bytes"
	"context"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/tsp"
)

// startBaseline serves a baseline of kind on loopback until the test ends.
func startBaseline(t *testing.T, kind string) (string, *Baseline) {
	t.Helper()
	b, err := NewBaseline(kind)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- ServeBaseline(ctx, ln, b) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServeBaseline: %v", err)
		}
	})
	return ln.Addr().String(), b
}

// TestTSARequest: the generator's requests are what tsp parses, each
// with its own imprint and a positive nonce.
func TestTSARequest(t *testing.T) {
	seen := map[string]bool{}
	for _, wn := range [][2]uint64{{0, 0}, {0, 1}, {1, 0}, {1 << 21, 0}, {63, 1<<40 - 1}} {
		der := tsaRequest(wn[0], wn[1])
		req, err := tsp.ParseRequest(der)
		if err != nil {
			t.Fatalf("request %v: %v", wn, err)
		}
		if !req.CertReq || len(req.Nonce) != 8 || req.Nonce[0]&0x80 != 0 || req.Nonce[0] == 0 {
			t.Fatalf("request %v: certReq %v nonce %x", wn, req.CertReq, req.Nonce)
		}
		if !bytes.Equal(req.Imprint, hashFor(wn[0], wn[1])) {
			t.Fatalf("request %v: imprint %x", wn, req.Imprint)
		}
		if seen[string(req.Nonce)] {
			t.Fatalf("request %v: nonce %x repeated", wn, req.Nonce)
		}
		seen[string(req.Nonce)] = true
	}
}

// TestBaselineTokens: the baseline answers with plain tokens that verify
// with its root, signed by the kind of key asked for; bad requests get
// rejections, not errors of the server.
func TestBaselineTokens(t *testing.T) {
	for _, kind := range []string{KeyRSA, KeyECDSA} {
		t.Run(kind, func(t *testing.T) {
			addr, b := startBaseline(t, kind)
			der := tsaRequest(3, 4)
			resp := post(t, "http://"+addr+"/tsa", der, http.StatusOK)
			tok, err := tsp.ParseResponse(resp)
			if err != nil {
				t.Fatal(err)
			}
			roots := x509.NewCertPool()
			roots.AddCert(b.Root())
			if err := tok.VerifyTSA(roots, nil, time.Time{}); err != nil {
				t.Fatalf("VerifyTSA: %v", err)
			}
			if tok.KSISignature != nil || keyKind(tok) != kind {
				t.Fatalf("token: KSI %d bytes, key %s", len(tok.KSISignature), keyKind(tok))
			}
			if d := time.Since(tok.GenTime); d < 0 || d > 5*time.Second {
				t.Fatalf("genTime %v is not now", tok.GenTime)
			}
			got, err := ProbeTSA(context.Background(), Config{Server: addr})
			if err != nil || got != kind {
				t.Fatalf("ProbeTSA: %q, %v", got, err)
			}
			if _, err := ProbeTSA(context.Background(), Config{Server: addr, TSAWantKSI: true}); err == nil || !strings.Contains(err.Error(), "KSI") {
				t.Fatalf("ProbeTSA wanting a KSI signature of a plain token: %v", err)
			}
			rej := post(t, "http://"+addr+"/tsa", []byte("not DER"), http.StatusOK)
			if granted(rej) {
				t.Fatal("a rejection reads as granted")
			}
			if _, err := tsp.ParseResponse(rej); err == nil || !strings.Contains(err.Error(), "badDataFormat") && !strings.Contains(err.Error(), "DER") {
				t.Fatalf("rejection: %v", err)
			}
		})
	}
}

func post(t *testing.T, url string, body []byte, want int) []byte {
	t.Helper()
	resp, err := http.Post(url, "application/timestamp-query", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != want {
		t.Fatalf("HTTP %d, want %d: %q", resp.StatusCode, want, out)
	}
	return out
}

// TestRunTSA: ModeTSA against the baseline, open loop, answers what it
// sends; a run that wants KSI signatures from the baseline fails.
func TestRunTSA(t *testing.T) {
	addr, _ := startBaseline(t, KeyECDSA)
	res, err := Run(context.Background(), Config{Server: addr, Mode: ModeTSA, Concurrency: 4, Rate: 400,
		Duration: time.Second, Warmup: 200 * time.Millisecond, TSAConns: 16})
	if err != nil {
		t.Fatal(err)
	}
	// 400 offered over 1s: a loaded machine may delay the schedule by a
	// few calls, never send more than it offered.
	// The baseline answers at once: about as many answers arrive in the
	// measured second as are sent in it.
	if res.Errors != 0 || res.Requests < 360 || res.Requests > 404 || res.Throughput < 340 || res.Throughput > 410 || res.TSAKey != KeyECDSA || res.BytesPerSig < 300 {
		t.Fatalf("result: %+v", res)
	}
	res, err = Run(context.Background(), Config{Server: addr, Mode: ModeTSA, Concurrency: 2,
		Duration: 300 * time.Millisecond, TSAWantKSI: true})
	if err == nil && res.Errors == 0 {
		t.Fatalf("a run wanting KSI signatures from the baseline passed: %+v", res)
	}
}

// TestGranted: the status check reads both length forms and refuses
// what is not a granted response.
func TestGranted(t *testing.T) {
	short := []byte{0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x00}
	long := append([]byte{0x30, 0x82, 0x01, 0x00, 0x30, 0x03, 0x02, 0x01, 0x01}, make([]byte, 0xf9)...)
	for _, tt := range []struct {
		b    []byte
		want bool
	}{
		{short, true}, {long, true},
		{[]byte{0x30, 0x05, 0x30, 0x03, 0x02, 0x01, 0x02}, false}, // rejection
		{[]byte{0x30, 0x05, 0x30, 0x03, 0x02, 0x01}, false},
		{nil, false}, {[]byte{0x04, 0x00}, false},
		{tsp.Rejection(&tsp.Failure{Info: tsp.BadAlg, Text: "no"}), false},
	} {
		if got := granted(tt.b); got != tt.want {
			t.Errorf("granted(%x) = %v", tt.b, got)
		}
	}
}
