package bench

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/node/nodetest"
)

// startNode runs a real server (calendar and aggregator in one node, as
// `tempel serve` has them, 20 ms rounds) on loopback for the test and
// returns its address. users is its users file ("" for development
// mode); maxMemory its --max-memory (0 for the default).
func startNode(t *testing.T, users string, maxMemory int64) string {
	t.Helper()
	return startNodeWith(t, users, maxMemory, func(*node.Config) {})
}

// startNodeWith is startNode with more of the node's configuration set
// by tweak.
func startNodeWith(t *testing.T, users string, maxMemory int64, tweak func(*node.Config)) string {
	t.Helper()
	if testing.Short() {
		t.Skip("starts a server and signs through its calendar")
	}
	dir := t.TempDir()
	cfg := node.Config{Role: node.RoleAll, DataDir: filepath.Join(dir, "data"), RoundPeriod: 20 * time.Millisecond,
		PublishEvery: time.Hour, MaxMemory: maxMemory, Logger: slog.New(slog.DiscardHandler)}
	if users != "" {
		cfg.UsersFile = filepath.Join(dir, "users")
		if err := os.WriteFile(cfg.UsersFile, []byte(users), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	tweak(&cfg)
	addr, _ := nodetest.Start(t, cfg)
	// Ready once the calendar has its first second: poll /readyz.
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if r, err := http.Get("http://" + addr + "/readyz"); err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return addr
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("the node did not become ready within 30s")
		}
	}
}

const (
	testLogin = "alice"
	testKey   = "secret-a"
)

// TestRunRESTAndPDU: each mode, open loop at 200/s for a second against
// a real server with a users file, signs what it sends with no error,
// its credentials honoured (the first signature is verified by the run;
// TestFirstAnswerChecked shows that a wrong one fails); the wrong key is
// refused as an error, not counted as a refusal for load.
func TestRunRESTAndPDU(t *testing.T) {
	addr := startNode(t, testLogin+":"+testKey+"\n", 0)
	for _, tt := range []struct{ mode, wrongKey string }{
		{ModeREST, "HTTP 401"},
		{ModePDU, "status 0x102"},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			res, err := Run(context.Background(), Config{Server: addr, Mode: tt.mode, Concurrency: 2, Rate: 200,
				Duration: time.Second, Warmup: 200 * time.Millisecond, HTTPConns: 400, Login: testLogin, Key: testKey})
			if err != nil {
				t.Fatal(err)
			}
			// 200 offered over 1s: a loaded machine may delay the
			// schedule by a few calls, never send more than it offered.
			if res.Errors != 0 || res.Refused != 0 || res.Requests < 150 || res.Requests > 202 || res.BytesPerSig < 500 ||
				res.P99Sent <= 0 || res.P99Sent > 5*time.Second || res.Offered != 200 {
				t.Fatalf("result: %+v", res)
			}
			t.Log(res)
			res, err = Run(context.Background(), Config{Server: addr, Mode: tt.mode, Concurrency: 1,
				Duration: 200 * time.Millisecond, Login: testLogin, Key: "wrong"})
			if err == nil || res == nil || res.Requests != 0 || res.Errors == 0 || res.Refused != 0 || !strings.Contains(res.FirstError, tt.wrongKey) {
				t.Fatalf("wrong key: %+v, %v; want every request failed with %q", res, err, tt.wrongKey)
			}
			t.Log(res)
		})
	}
}

// TestRefusalsCounted: a server whose budget for waiting requests has
// no room refuses every request, with HTTP 429 on REST and status 0x106
// in PDUs; the runs count them as refusals, timed from their sending,
// and none as an answer.
func TestRefusalsCounted(t *testing.T) {
	addr := startNode(t, "", 2) // a budget of one byte: no request fits
	for _, tt := range []struct{ mode, want string }{
		{ModeREST, "HTTP 429: code 8: "},
		{ModePDU, "status 0x106: "},
	} {
		t.Run(tt.mode, func(t *testing.T) {
			res, err := Run(context.Background(), Config{Server: addr, Mode: tt.mode, Concurrency: 2, Rate: 200,
				Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, HTTPConns: 16})
			if err == nil || res == nil {
				t.Fatalf("a run whose every request was refused passed: %+v, %v", res, err)
			}
			if res.Requests != 0 || res.Errors < 50 || res.Refused != res.Errors || !strings.Contains(res.FirstError, tt.want) ||
				res.RefusedP99 <= 0 || res.RefusedP99 > 2*time.Second {
				t.Fatalf("result: %+v; want every request refused with %q at once", res, tt.want)
			}
			if s := res.String(); !strings.Contains(s, "refused for load") {
				t.Fatalf("the report does not say how many were refused: %s", s)
			}
		})
	}
}

// TestStreamRefusalsCounted: a stream the server refuses (no room in
// its budget) ends with RESOURCE_EXHAUSTED; the run counts it as a
// refusal and stops sending on it, instead of reporting no errors.
func TestStreamRefusalsCounted(t *testing.T) {
	addr := startNode(t, "", 2) // a budget of one byte: no stream fits
	for _, mode := range []string{ModeStream, ModeBatch} {
		t.Run(mode, func(t *testing.T) {
			res, err := Run(context.Background(), Config{Server: addr, Mode: mode, Concurrency: 2, Window: 64,
				Duration: 300 * time.Millisecond, Warmup: 100 * time.Millisecond})
			if err == nil || res == nil || res.Requests != 0 || res.Errors < 1 || res.Refused != res.Errors ||
				!strings.Contains(res.FirstError, "ResourceExhausted") {
				t.Fatalf("result: %+v, %v; want the refused streams counted as refusals", res, err)
			}
		})
	}
}

// TestConnectionLimitCounted: connections beyond the server's
// --max-conns are closed as they are accepted; a request on such a
// connection is counted as refused for load, not as a plain error, and
// its time as a refusal's.
func TestConnectionLimitCounted(t *testing.T) {
	addr := startNodeWith(t, "", 0, func(c *node.Config) { c.MaxConns = 2 })
	// The 2 connections the server takes carry a request a second each
	// (its calendar second), which a slow machine may not fit in the
	// window: the run may then fail as a whole, its result still given.
	res, err := Run(context.Background(), Config{Server: addr, Mode: ModeREST, Concurrency: 1, Rate: 200,
		Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, HTTPConns: 8})
	if res == nil {
		t.Fatal(err)
	}
	if res.Refused < 50 || !strings.Contains(res.FirstError, "connection limit") || res.RefusedP99 <= 0 {
		t.Fatalf("result: %+v, %v; want the requests on the connections beyond the server's 2 refused", res, err)
	}
	t.Log(res)
}

// TestGeneratorBacklogBounded: when the pool's connections cannot carry
// the rate (each answer waits about a second for its calendar second),
// the requests waiting for a connection are bounded and the rest fail at
// once as not sent, so the run ends soon after its window and reports
// what came within it.
func TestGeneratorBacklogBounded(t *testing.T) {
	addr := startNode(t, "", 0)
	begin := time.Now()
	res, err := Run(context.Background(), Config{Server: addr, Mode: ModeREST, Concurrency: 1, Rate: 200,
		Duration: 500 * time.Millisecond, Warmup: 100 * time.Millisecond, HTTPConns: 1})
	took := time.Since(begin)
	if res == nil { // a run with no answer in its window fails, with its result
		t.Fatal(err)
	}
	// 100 requests offered to one connection that carries a few a
	// second: at most 4 wait, the others are not sent.
	if res.Errors < 50 || res.Refused != 0 || !strings.Contains(res.FirstError, "not sent") || took > 15*time.Second ||
		res.Throughput > 20 {
		t.Fatalf("after %s: %+v; want most requests not sent, few answered, the run over soon", took, res)
	}
	if s := res.String(); !strings.Contains(s, "within the window") {
		t.Fatalf("the report does not say what was answered within the window: %s", s)
	}
	t.Log(res)
}

// TestFirstAnswerChecked: the checks of the answers catch what is wrong
// in them: a signature that is not for the hash sent, a PDU answer with
// a wrong HMAC or for another request.
func TestFirstAnswerChecked(t *testing.T) {
	addr := startNode(t, "", 0)
	hash, other := hashFor(7, 1), hashFor(7, 2)

	t.Run(ModeREST, func(t *testing.T) {
		resp, err := http.Post("http://"+addr+restPath, "application/json", bytes.NewReader(restBody(hash)))
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		r := &run{}
		if n, err := r.restAnswer(resp.StatusCode, body.Bytes(), hash); err != nil || n < 500 {
			t.Fatalf("the answer for its hash: %d bytes, %v", n, err)
		}
		// Later answers are only looked at: the size read without
		// decoding is the signature's, give or take base64's padding.
		if n, err := r.restAnswer(resp.StatusCode, body.Bytes(), other); err != nil || n < 500 {
			t.Fatalf("a later answer: %d bytes, %v", n, err)
		}
		r = &run{}
		if _, err := r.restAnswer(resp.StatusCode, body.Bytes(), other); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Fatalf("a first answer for another hash: %v", err)
		}
		if _, err := (&run{}).restAnswer(http.StatusOK, []byte(`{"aggregationTime":"1"}`), hash); err == nil {
			t.Fatal("an answer without a signature passed")
		}
	})

	t.Run(ModePDU, func(t *testing.T) {
		key := []byte(pduDevKey)
		req, err := pduRequest(pduDevLogin, key, 7, 1)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post("http://"+addr+pduPath, "application/ksi-request", bytes.NewReader(req))
		if err != nil {
			t.Fatal(err)
		}
		var body bytes.Buffer
		body.ReadFrom(resp.Body)
		resp.Body.Close()
		id := pduRequestID(7, 1)
		elems, err := pduAnswer(resp.StatusCode, body.Bytes(), key, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := checkElements(elems, hash); err != nil {
			t.Fatalf("the signature of its hash: %v", err)
		}
		if err := checkElements(elems, other); err == nil || !strings.Contains(err.Error(), "does not verify") {
			t.Fatalf("the signature checked against another hash: %v", err)
		}
		if _, err := pduAnswer(resp.StatusCode, body.Bytes(), []byte("wrong"), id); err == nil || !strings.Contains(err.Error(), "hmac") {
			t.Fatalf("an answer checked with another key: %v", err)
		}
		if _, err := pduAnswer(resp.StatusCode, body.Bytes(), key, id+1); err == nil {
			t.Fatal("an answer for another request passed")
		}
	})
}

// TestPDURequestsOfOneLength: h1pool posts bodies of one length, so
// every request PDU of a run must have it.
func TestPDURequestsOfOneLength(t *testing.T) {
	want, err := pduRequest(pduDevLogin, []byte(pduDevKey), 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, wn := range [][2]uint64{{0, 1}, {1, 0}, {63, 1<<40 - 1}, {1<<16 - 1, 12345}} {
		got, err := pduRequest(pduDevLogin, []byte(pduDevKey), wn[0], wn[1])
		if err != nil || len(got) != len(want) {
			t.Fatalf("request %v: %d bytes, %v; want %d", wn, len(got), err, len(want))
		}
	}
	if a, b := pduRequestID(1, 2), pduRequestID(2, 1); a == b {
		t.Fatal("two workers' requests share an id")
	}
	if len(restBody(hashFor(0, 0))) != len(restBody(hashFor(9, 99))) {
		t.Fatal("REST bodies differ in length")
	}
}

// TestJSONStringLen: the signature is found in the gateway's answer
// however its JSON is spaced.
func TestJSONStringLen(t *testing.T) {
	for _, tt := range []struct {
		body string
		want int
	}{
		{`{"signature":"QUJD","aggregationTime":"1"}`, 4},
		{`{"requestId":"0", "signature" : "QUJDRA=="}`, 8},
		{"{\n  \"signature\":\n \"\"}", 0},
		{`{"signature":null}`, -1},
		{`{"signature":"QUJD`, -1},
		{`{"code":8,"message":"overloaded"}`, -1},
	} {
		if got := jsonStringLen([]byte(tt.body), "signature"); got != tt.want {
			t.Errorf("jsonStringLen(%s) = %d, want %d", tt.body, got, tt.want)
		}
	}
}
