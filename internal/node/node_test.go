package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// started is a node serving on a loopback port.
type started struct {
	n    *Node
	addr string
	stop func()
}

func start(t *testing.T, cfg Config) *started {
	t.Helper()
	return startOn(t, listen(t), cfg)
}

// listen is a free loopback port to start a node on.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// startOn runs a node on ln (whose address a cluster's Config may name).
func startOn(t *testing.T, ln net.Listener, cfg Config) *started {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = quiet()
	}
	if cfg.RoundPeriod == 0 {
		cfg.RoundPeriod = 20 * time.Millisecond
	}
	cfg.PublicURL = "http://" + ln.Addr().String()
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, ln) }()
	s := &started{n: n, addr: ln.Addr().String()}
	var once sync.Once
	s.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("node run: %v", err)
			}
			n.Close()
		})
	}
	t.Cleanup(s.stop)
	return s
}

func dial(t *testing.T, addr string) *grpc.ClientConn {
	t.Helper()
	c, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func docHash(s string) ksi.Imprint {
	d := sha256.Sum256([]byte(s))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, d[:]...)
}

// trustedPubFile fetches the calendar's publications file over HTTP and
// verifies it against the node's development root.
func trustedPubFile(t *testing.T, cal *started) *ksi.PublicationsFile {
	t.Helper()
	resp, err := http.Get("http://" + cal.addr + "/publications.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 200 || resp.Header.Get("ETag") == "" {
		t.Fatalf("publications.bin: %s, ETag %q", resp.Status, resp.Header.Get("ETag"))
	}
	pf, err := ksi.ParsePublicationsFile(b)
	if err != nil {
		t.Fatal(err)
	}
	keys := cal.n.Keys()
	pool := x509.NewCertPool()
	pool.AddCert(keys.Root)
	c, _ := verifier.ParseConstraint(keys.Constraint())
	if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: pool, Constraints: []verifier.Constraint{c}, Time: time.Now()}); err != nil {
		t.Fatal(err)
	}
	return pf
}

// TestHierarchy runs a calendar and two levels of aggregators as real
// servers on loopback and signs at the lowest level.
func TestHierarchy(t *testing.T) {
	dir := t.TempDir()
	usersFile := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// Each parent knows its children by login and key; the gateway at the
	// bottom runs in development mode (anonymous callers).
	cal := start(t, Config{Role: RoleCalendar, DataDir: t.TempDir(), PublishEvery: time.Hour, UsersFile: usersFile("cal-users", "mid-aggregator:k1\n")})
	mid := start(t, Config{Role: RoleAggregator, Upstream: cal.addr, Name: "mid-aggregator", UpstreamKey: "k1", UsersFile: usersFile("mid-users", "gateway:k2\n")})
	low := start(t, Config{Role: RoleAggregator, Upstream: mid.addr, Name: "gateway", UpstreamKey: "k2"})
	signer := tempelv1.NewSignerClient(dial(t, low.addr))

	var wg sync.WaitGroup
	sigs := make([]*ksi.Signature, 8)
	for i := range sigs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx := metadata.AppendToOutgoingContext(context.Background(), "x-tempel-machine-id", "host-7")
			resp, err := signer.Sign(ctx, &tempelv1.SignRequest{RequestId: uint64(i + 1), Hash: docHash(string(rune('a' + i))), Level: uint32(i % 2)})
			if err != nil {
				t.Error(err)
				return
			}
			if sigs[i], err = ksi.ParseSignature(resp.Signature); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if t.Failed() {
		t.FailNow()
	}
	pf := trustedPubFile(t, cal)
	for i, sig := range sigs {
		chains := sig.Chains()
		if len(chains) != 3 {
			t.Fatalf("signature %d has %d aggregation chains, want 3 (gateway, mid, calendar)", i, len(chains))
		}
		for j, c := range chains {
			if len(c.ChainIndex) != 3-j {
				t.Fatalf("chain %d index %v: want %d entries", j, c.ChainIndex, 3-j)
			}
		}
		rep := verifier.Verify(context.Background(), sig, verifier.KeyBased, verifier.Options{
			Document: docHash(string(rune('a' + i))), InputLevel: uint64(i % 2), PublicationsFile: pf})
		if rep.Result != verifier.OK {
			t.Fatalf("signature %d: %s %s: %s", i, rep.Result, rep.Code, rep.Message)
		}
		if got := strings.Join(sig.Identity(), " :: "); got != "mid-aggregator :: gateway :: anonymous" {
			t.Fatalf("identity %q", got)
		}
		if md := sig.Metadata()[0]; md.MachineID != "host-7" || md.SequenceNumber != uint64(i+1) {
			t.Fatalf("lowest metadata %+v", md)
		}
	}
}

func TestRESTAndPDU(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("# test users\nalice:secret-a\nanon:anon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), UsersFile: users, Quota: 1000})
	base := "http://" + n.addr

	post := func(path, auth, body string) (*http.Response, []byte) {
		req, _ := http.NewRequest("POST", base+path, strings.NewReader(body))
		if auth != "" {
			req.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(auth)))
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp, b
	}
	// REST with the ksi-tool hash syntax.
	resp, body := post("/v1/sign", "alice:secret-a", `{"hash":"SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("REST sign: %s %s", resp.Status, body)
	}
	var sr struct{ Signature []byte }
	if err := json.Unmarshal(body, &sr); err != nil {
		t.Fatal(err)
	}
	sig, err := ksi.ParseSignature(sr.Signature)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: docHash("LAPTOP")}); rep.Result != verifier.OK {
		t.Fatalf("REST signature: %s %s", rep.Code, rep.Message)
	}
	if sig.Metadata()[0].ClientID != "alice" {
		t.Fatalf("client id %q", sig.Metadata()[0].ClientID)
	}
	// Wrong key and unknown user get the same answer.
	r1, b1 := post("/v1/sign", "alice:wrong", `{"hash":"SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"}`)
	r2, b2 := post("/v1/sign", "mallory:x", `{"hash":"SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"}`)
	if r1.StatusCode != 401 || r2.StatusCode != 401 || !bytes.Equal(b1, b2) {
		t.Fatalf("auth failures: %s %s / %s %s", r1.Status, b1, r2.Status, b2)
	}
	// Bad input: wrong hash length, unknown algorithm, body over the limit.
	for _, bad := range []string{`{"hash":"SHA-256:11a7"}`, `{"hash":"MD5:00"}`, `{"hash":"` + strings.Repeat("A", 100_000) + `"}`} {
		if r, b := post("/v1/sign", "alice:secret-a", bad); r.StatusCode < 400 || r.StatusCode >= 500 {
			t.Fatalf("bad request %.40s answered %s %s", bad, r.Status, b)
		}
	}
	// gRPC without credentials is refused outside development mode.
	_, err = tempelv1.NewSignerClient(dial(t, n.addr)).Sign(context.Background(), &tempelv1.SignRequest{Hash: docHash("x")})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("anonymous gRPC call: %v", err)
	}

	// KSI PDU v2 signing with the reference SDKs' test user.
	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.AggregationRequest{{RequestID: 42, Hash: docHash("LAPTOP")}}, ConfigRequest: true}
	raw, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	resp, body = post("/gt-signingservice", "", string(raw))
	out, err := pdu.ParseAggregatorResponse(body)
	if err != nil {
		t.Fatalf("PDU response (%s): %v", resp.Status, err)
	}
	if err := out.Verify([]byte("anon")); err != nil {
		t.Fatal(err)
	}
	if len(out.Responses) != 1 || out.Responses[0].RequestID != 42 || out.Responses[0].Status != 0 {
		t.Fatalf("PDU responses %+v", out.Responses)
	}
	// Max requests is what one response PDU can carry, below the quota.
	if out.Config == nil || out.Config.MaxRequests < 1 || out.Config.MaxRequests >= 1000 || out.Config.AggregationAlgorithm != ksi.SHA2_256 {
		t.Fatalf("config %+v", out.Config)
	}
	psig, err := ksi.SignatureFromElements(out.Responses[0].SignatureElements)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifier.Verify(context.Background(), psig, verifier.Internal, verifier.Options{Document: docHash("LAPTOP")}); rep.Result != verifier.OK {
		t.Fatalf("PDU signature: %s %s", rep.Code, rep.Message)
	}

	// Metrics (for users only) and health.
	if r, err := http.Get(base + "/metrics"); err != nil || r.StatusCode != http.StatusUnauthorized {
		t.Fatalf("metrics without credentials: %v %v", r, err)
	}
	mreq, _ := http.NewRequest("GET", base+"/metrics", nil)
	mreq.SetBasicAuth("alice", "secret-a")
	mresp, err := http.DefaultClient.Do(mreq)
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := io.ReadAll(mresp.Body)
	mresp.Body.Close()
	for _, name := range []string{"tempel_calendar_leaves_appended_total", "tempel_aggregator_round_size", "tempel_calendar_signatures_issued_total", "tempel_aggregator_queue_depth",
		`tempel_requests_total{interface="rest",method="sign",status="200"} 1`,
		`tempel_requests_total{interface="rest",method="sign",status="401"} 2`,
		`tempel_requests_total{interface="pdu",method="gt-signingservice",status="200"} 1`,
		`tempel_requests_total{interface="grpc",method="Sign",status="Unauthenticated"} 1`} {
		if !bytes.Contains(mb, []byte(name)) {
			t.Errorf("metrics lack %s", name)
		}
	}
	if r, err := http.Get(base + "/readyz"); err != nil || r.StatusCode != 200 {
		t.Fatalf("readyz: %v %v", r, err)
	}
}

// TestRESTExtendAndPublications exercises the calendar's REST routes: the
// calendar head, extending through /v1/extend, the publication list.
func TestRESTExtendAndPublications(t *testing.T) {
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Second})
	base := "http://" + n.addr
	resp, err := http.Post(base+"/v1/sign", "application/json", strings.NewReader(`{"hash":"SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"}`))
	if err != nil {
		t.Fatal(err)
	}
	var sr struct {
		Signature       []byte
		AggregationTime string
	}
	json.NewDecoder(resp.Body).Decode(&sr)
	resp.Body.Close()
	sig, err := ksi.ParseSignature(sr.Signature)
	if err != nil {
		t.Fatal(err)
	}
	// Wait (on the condition, polling the head) until the calendar has
	// a second after the signature's, and a publication covering it.
	var head struct{ FirstTime, LastTime string }
	deadline := time.Now().Add(15 * time.Second)
	for {
		r, err := http.Get(base + "/v1/calendar/head")
		if err != nil {
			t.Fatal(err)
		}
		json.NewDecoder(r.Body).Decode(&head)
		r.Body.Close()
		if head.LastTime > sr.AggregationTime && len(n.n.pub.Publications()) > 0 && n.n.pub.Latest().Data.Time >= sig.SigningTime() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("calendar did not advance: head %+v", head)
		}
		time.Sleep(50 * time.Millisecond)
	}
	pub := n.n.pub.Latest()
	body := `{"aggregationTime":"` + sr.AggregationTime + `","publicationTime":"` + strconv.FormatUint(pub.Data.Time, 10) + `"}`
	resp, err = http.Post(base+"/v1/extend", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var er struct{ CalendarChain []byte }
	json.NewDecoder(resp.Body).Decode(&er)
	resp.Body.Close()
	e, err := tlv.ReadOne(er.CalendarChain)
	if err != nil {
		t.Fatalf("extend answered %s: %v", resp.Status, err)
	}
	chain, err := ksi.ParseCalendarChain(e)
	if err != nil {
		t.Fatal(err)
	}
	rec, _ := pub.WithType(ksi.TypePublicationRecord)
	ext, err := sig.Extend(chain, rec)
	if err != nil {
		t.Fatal(err)
	}
	pf := trustedPubFile(t, n)
	if rep := verifier.Verify(context.Background(), ext, verifier.PublicationsFileBased, verifier.Options{Document: docHash("LAPTOP"), PublicationsFile: pf}); rep.Result != verifier.OK {
		t.Fatalf("extended signature against the publications file: %s %s %s", rep.Result, rep.Code, rep.Message)
	}
	// Out of range: an extend to a second the calendar has not reached.
	resp, err = http.Post(base+"/v1/extend", "application/json", strings.NewReader(`{"aggregationTime":"`+sr.AggregationTime+`","publicationTime":"4000000000"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Fatalf("extend past the head: %s, want 400 (OUT_OF_RANGE)", resp.Status)
	}
	r, err := http.Get(base + "/v1/publications")
	if err != nil {
		t.Fatal(err)
	}
	var list struct {
		Publications []struct{ PublicationString string }
	}
	json.NewDecoder(r.Body).Decode(&list)
	r.Body.Close()
	if len(list.Publications) == 0 || list.Publications[len(list.Publications)-1].PublicationString == "" {
		t.Fatalf("publication list %+v", list)
	}
}
