package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// The public surface as the README documents it, written out here apart
// from the access table so that making anything else public fails a test.
var (
	wantPublicServices = []string{"grpc.health.v1.Health", "tempel.v1.Publications"}
	wantPublicPaths    = []string{"/healthz", "/openapi.json", "/publications.bin", "/readyz", "/v1/publications", "/verify"}
)

// creds is one way of presenting (or not) credentials.
type creds struct {
	name       string
	login, key string
	none       bool
	accepted   bool   // on a route that needs credentials
	clientID   string // the identity a signature gets when accepted
}

func modeCreds(dev bool) []creds {
	if dev {
		return []creds{
			{name: "none", none: true, accepted: true, clientID: "anonymous"},
			{name: "anon/wrong", login: "anon", key: "wrong"},
			{name: "someone/x", login: "someone", key: "x"},
			{name: "anon/anon", login: "anon", key: "anon", accepted: true, clientID: "anon"},
		}
	}
	return []creds{
		{name: "none", none: true},
		{name: "alice/wrong", login: "alice", key: "wrong"},
		{name: "mallory/x", login: "mallory", key: "x"},
		{name: "anon/anon", login: "anon", key: "anon"},
		{name: "alice/secret-a", login: "alice", key: "secret-a", accepted: true, clientID: "alice"},
	}
}

func writeUsers(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// waitReady polls /readyz until the node answers 200.
func waitReady(t *testing.T, addr string) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		r, err := http.Get("http://" + addr + "/readyz")
		if err == nil {
			r.Body.Close()
			if r.StatusCode == http.StatusOK {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("node not ready: %v", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestAccessEveryRoute walks every gRPC method the server registers and
// every HTTP route the mux serves (the REST routes read from the
// gateway's own configuration) with no, wrong and right credentials, in
// production mode (users file) and development mode.
func TestAccessEveryRoute(t *testing.T) {
	for _, mode := range []string{"production", "development"} {
		t.Run(mode, func(t *testing.T) {
			dev := mode == "development"
			cfg := Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour}
			if !dev {
				cfg.UsersFile = writeUsers(t, "alice:secret-a\n")
			}
			s := start(t, cfg)
			waitReady(t, s.addr)
			checkRouteTables(t, s)
			walkGRPC(t, s, dev)
			walkHTTP(t, s, dev)
		})
	}
}

// checkRouteTables checks that the access table lists every route the
// node serves, and serves every route it lists.
func checkRouteTables(t *testing.T, s *started) {
	mux, err := s.n.httpMux(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	served := map[string]bool{}
	for _, p := range mux.patterns {
		if _, path, ok := strings.Cut(p, " "); ok {
			p = path
		}
		if p == "/v1/" {
			continue // the gateway: its routes are read from its configuration below
		}
		served[p] = true
		if _, ok := httpRoutes[p]; !ok {
			t.Errorf("the mux serves %s, which the access table does not list", p)
		}
	}
	rest := gatewayRoutes(t)
	for p, m := range rest {
		served[p] = true
		if r := httpRoutes[p]; r.iface != server.IfaceREST || r.grpcMethod != m {
			t.Errorf("REST route %s (%s) is listed as %+v", p, m, r)
		}
	}
	for p := range httpRoutes {
		if !served[p] {
			t.Errorf("the access table lists %s, which nothing serves", p)
		}
	}
	var public []string
	for p := range httpRoutes {
		if accessOf(httpRoutes[p].iface, p) == server.Public {
			public = append(public, p)
		}
	}
	sort.Strings(public)
	if !slices.Equal(public, wantPublicPaths) {
		t.Errorf("public HTTP routes %v, want %v", public, wantPublicPaths)
	}
}

// gatewayRoutes reads the REST routes (path -> gRPC method) from the
// gateway configuration the generated code was made from.
func gatewayRoutes(t *testing.T) map[string]string {
	b, err := os.ReadFile("../../proto/tempel/v1/tempel_gateway.yaml")
	if err != nil {
		t.Fatal(err)
	}
	rule := regexp.MustCompile(`selector:\s*(\S+)\.(\w+)\s*\n\s*(?:get|post|put|patch|delete):\s*(\S+)`)
	routes := map[string]string{}
	for _, m := range rule.FindAllStringSubmatch(string(b), -1) {
		routes[m[3]] = "/" + m[1] + "/" + m[2]
	}
	if len(routes) != strings.Count(string(b), "selector:") {
		t.Fatalf("read %d REST routes from the gateway configuration, which has %d selectors", len(routes), strings.Count(string(b), "selector:"))
	}
	return routes
}

func basicHeader(c creds) string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(c.login+":"+c.key))
}

func walkGRPC(t *testing.T, s *started, dev bool) {
	conn := dial(t, s.addr)
	info := s.n.grpcServer().GetServiceInfo()
	if len(info) < 4 {
		t.Fatalf("only %d gRPC services registered", len(info))
	}
	for svc, si := range info {
		public := slices.Contains(wantPublicServices, svc)
		for _, m := range si.Methods {
			method := "/" + svc + "/" + m.Name
			for _, c := range modeCreds(dev) {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				if !c.none {
					ctx = metadata.AppendToOutgoingContext(ctx, "authorization", basicHeader(c))
				}
				err := callGRPC(ctx, conn, method, m, c, t)
				cancel()
				got := status.Code(err)
				switch {
				case public || c.accepted:
					if got == codes.Unauthenticated {
						t.Errorf("%s with %s: %v, want it let through", method, c.name, err)
					}
				default:
					if got != codes.Unauthenticated {
						t.Errorf("%s with %s: %v, want Unauthenticated", method, c.name, err)
					}
				}
			}
		}
	}
}

// callGRPC calls any method: Sign with a real request (its signature's
// client id is checked), every other one with an empty message.
func callGRPC(ctx context.Context, conn *grpc.ClientConn, method string, m grpc.MethodInfo, c creds, t *testing.T) error {
	if method == tempelv1.Signer_Sign_FullMethodName {
		resp := &tempelv1.SignResponse{}
		err := conn.Invoke(ctx, method, &tempelv1.SignRequest{Hash: docHash("walk")}, resp)
		if err == nil {
			sig, perr := ksi.ParseSignature(resp.Signature)
			if perr != nil {
				t.Errorf("Sign with %s: %v", c.name, perr)
			} else if id := sig.Metadata()[0].ClientID; id != c.clientID {
				t.Errorf("Sign with %s: client id %q, want %q", c.name, id, c.clientID)
			}
		}
		return err
	}
	if !m.IsClientStream && !m.IsServerStream {
		return conn.Invoke(ctx, method, &emptypb.Empty{}, &emptypb.Empty{})
	}
	st, err := conn.NewStream(ctx, &grpc.StreamDesc{ClientStreams: m.IsClientStream, ServerStreams: m.IsServerStream}, method)
	if err != nil {
		return err
	}
	if !m.IsClientStream {
		if err := st.SendMsg(&emptypb.Empty{}); err != nil && !errors.Is(err, io.EOF) {
			return err
		}
	}
	st.CloseSend()
	if err := st.RecvMsg(&emptypb.Empty{}); !errors.Is(err, io.EOF) {
		return err
	}
	return nil
}

func walkHTTP(t *testing.T, s *started, dev bool) {
	paths := []string{"/nope", "/debug/pprof/", "/v1/other"}
	for p := range httpRoutes {
		paths = append(paths, p)
	}
	for _, p := range paths {
		r, known := httpRoutes[p]
		for _, c := range modeCreds(dev) {
			if known && r.iface == server.IfacePDU {
				walkPDU(t, s, p, c)
				continue
			}
			resp, body := httpCall(t, s, p, c)
			public := slices.Contains(wantPublicPaths, p)
			switch {
			case public && resp.StatusCode != http.StatusOK:
				t.Errorf("public %s with %s: %s %s", p, c.name, resp.Status, body)
			case !public && !c.accepted && resp.StatusCode != http.StatusUnauthorized:
				t.Errorf("%s with %s: %s, want 401", p, c.name, resp.Status)
			case !public && c.accepted && resp.StatusCode == http.StatusUnauthorized:
				t.Errorf("%s with %s: %s %s, want it let through", p, c.name, resp.Status, body)
			case !public && c.accepted && !known && resp.StatusCode != http.StatusNotFound:
				t.Errorf("unknown %s with %s: %s, want 404", p, c.name, resp.Status)
			case !public && c.accepted && (p == "/v1/sign" || p == "/metrics") && resp.StatusCode != http.StatusOK:
				t.Errorf("%s with %s: %s %s", p, c.name, resp.Status, body)
			}
			if p == "/v1/sign" && resp.StatusCode == http.StatusOK {
				checkRESTIdentity(t, body, c)
			}
			if resp.StatusCode == http.StatusUnauthorized && resp.Header.Get("WWW-Authenticate") == "" {
				t.Errorf("%s with %s: 401 without WWW-Authenticate", p, c.name)
			}
		}
	}
}

// checkRESTIdentity checks that the identity the middleware found reaches
// the signer through the gateway: the login and the machine id.
func checkRESTIdentity(t *testing.T, body string, c creds) {
	t.Helper()
	var sr struct{ Signature []byte }
	if err := json.Unmarshal([]byte(body), &sr); err != nil {
		t.Fatal(err)
	}
	sig, err := ksi.ParseSignature(sr.Signature)
	if err != nil {
		t.Fatal(err)
	}
	if md := sig.Metadata()[0]; md.ClientID != c.clientID || md.MachineID != "walker" {
		t.Errorf("REST sign with %s: metadata %+v, want client id %q machine id walker", c.name, md, c.clientID)
	}
}

func httpCall(t *testing.T, s *started, p string, c creds) (*http.Response, string) {
	method, body := http.MethodGet, ""
	switch p {
	case "/v1/sign":
		method, body = http.MethodPost, `{"hash":"SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"}`
	case "/v1/extend":
		method, body = http.MethodPost, `{"aggregationTime":"1","publicationTime":"2"}`
	}
	req, _ := http.NewRequest(method, "http://"+s.addr+p, strings.NewReader(body))
	if !c.none {
		req.Header.Set("Authorization", basicHeader(c))
	}
	req.Header.Set("X-Tempel-Machine-Id", "walker")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// walkPDU sends a PDU whose HMAC is made with the credentials' key ("none"
// being an empty login and key): 0x102 unless they are a user's, in
// development mode too.
func walkPDU(t *testing.T, s *started, p string, c creds) {
	c.accepted = c.accepted && !c.none
	var raw []byte
	var err error
	h := pdu.Header{LoginID: c.login}
	if p == "/gt-signingservice" {
		raw, err = (&pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: h},
			Requests: []pdu.AggregationRequest{{RequestID: 7, Hash: docHash("pdu walk")}}}).Encode(ksi.SHA2_256, []byte(c.key))
	} else {
		raw, err = (&pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: h}, ConfigRequest: true}).Encode(ksi.SHA2_256, []byte(c.key))
	}
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+s.addr+p, server.ContentTypePDU, bytes.NewReader(raw))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var env *pdu.Envelope
	var perr *pdu.ErrorPayload
	if p == "/gt-signingservice" {
		out, err := pdu.ParseAggregatorResponse(b)
		if err != nil {
			t.Fatalf("%s with %s: %s: %v", p, c.name, resp.Status, err)
		}
		env, perr = &out.Envelope, out.Error
		if c.accepted && (len(out.Responses) != 1 || out.Responses[0].Status != 0) {
			t.Errorf("%s with %s: responses %+v", p, c.name, out.Responses)
		}
	} else {
		out, err := pdu.ParseExtenderResponse(b)
		if err != nil {
			t.Fatalf("%s with %s: %s: %v", p, c.name, resp.Status, err)
		}
		env, perr = &out.Envelope, out.Error
		if c.accepted && out.Config == nil {
			t.Errorf("%s with %s: no config in the answer", p, c.name)
		}
	}
	if c.accepted {
		if resp.StatusCode != http.StatusOK || perr != nil || env.Verify([]byte(c.key)) != nil {
			t.Errorf("%s with %s: %s error %+v", p, c.name, resp.Status, perr)
		}
		return
	}
	if resp.StatusCode != http.StatusUnauthorized || perr == nil || perr.Status != pdu.StatusAuthFailure {
		t.Errorf("%s with %s: %s error %+v, want 401 and 0x102", p, c.name, resp.Status, perr)
	}
}

// TestAccessWeakPDUHMAC: HMACs weaker than SHA-256 are refused with 0x102
// and a message naming the algorithm, unless the node allows them; the
// response's HMAC then uses the request's algorithm.
func TestAccessWeakPDUHMAC(t *testing.T) {
	strict := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	lax := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, PDUAllowWeakHMAC: true})
	send := func(s *started, alg ksi.HashAlg) (*http.Response, *pdu.AggregatorResponse) {
		raw, err := (&pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
			Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: docHash("weak")}}}).Encode(alg, []byte("anon"))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := http.Post("http://"+s.addr+"/gt-signingservice", server.ContentTypePDU, bytes.NewReader(raw))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		out, err := pdu.ParseAggregatorResponse(b)
		if err != nil {
			t.Fatalf("%s: %s: %v", alg, resp.Status, err)
		}
		return resp, out
	}
	for _, alg := range []ksi.HashAlg{ksi.SHA1, ksi.RIPEMD160, ksi.SHA3_224} {
		resp, out := send(strict, alg)
		if resp.StatusCode != http.StatusUnauthorized || out.Error == nil || out.Error.Status != pdu.StatusAuthFailure ||
			!strings.Contains(out.Error.Message, alg.String()) {
			t.Errorf("%s: %s %+v, want 401, 0x102 and a message naming the algorithm", alg, resp.Status, out.Error)
		}
		resp, out = send(lax, alg)
		if resp.StatusCode != http.StatusOK || out.Error != nil || out.HMAC.Alg() != alg || out.Verify([]byte("anon")) != nil {
			t.Errorf("%s allowed: %s %+v, HMAC %s", alg, resp.Status, out.Error, out.HMAC.Alg())
		}
	}
	if resp, out := send(strict, ksi.SHA2_512); resp.StatusCode != http.StatusOK || out.HMAC.Alg() != ksi.SHA2_512 {
		t.Errorf("SHA-512: %s %+v", resp.Status, out.Error)
	}
}

// lockedBuffer is a log destination shared by the node's goroutines.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// lines returns the log lines whose message is msg.
func (l *lockedBuffer) lines(msg string) []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []string
	for _, line := range strings.Split(l.b.String(), "\n") {
		if strings.Contains(line, `msg="`+msg+`"`) {
			out = append(out, line)
		}
	}
	return out
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestAccessRefusalsLogged: a refused login is logged at WARN with the
// login, the remote address and the interface, on every interface, never
// with the key; a flood of refusals is rate-limited.
func TestAccessRefusalsLogged(t *testing.T) {
	var out lockedBuffer
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour,
		UsersFile: writeUsers(t, "alice:secret-a\n"), Logger: slog.New(slog.NewTextHandler(&out, nil))})
	waitReady(t, s.addr)
	bad := creds{name: "mallory", login: "mallory", key: "KEY-SENTINEL"}
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", basicHeader(bad))
	if _, err := tempelv1.NewSignerClient(dial(t, s.addr)).Sign(ctx, &tempelv1.SignRequest{Hash: docHash("x")}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("gRPC: %v", err)
	}
	httpCall(t, s, "/v1/sign", bad)
	httpCall(t, s, "/metrics", bad)
	walkPDU(t, s, "/gt-signingservice", bad)
	got := out.lines("authentication refused")
	want := []string{
		`interface=grpc login=mallory remote=127.0.0.1:\d+ route=/tempel.v1.Signer/Sign reason="unknown login"`,
		`interface=rest login=mallory remote=127.0.0.1:\d+ route=/v1/sign reason="unknown login"`,
		`interface=http login=mallory remote=127.0.0.1:\d+ route=/metrics reason="unknown login"`,
		`interface=pdu login=mallory remote=127.0.0.1:\d+ route=/gt-signingservice reason="wrong HMAC|unknown login"`,
	}
	if len(got) != len(want) {
		t.Fatalf("%d refusals logged, want %d:\n%s", len(got), len(want), out.String())
	}
	for i, w := range want {
		if !strings.HasPrefix(got[i], "time=") || !strings.Contains(got[i], "level=WARN") || !regexp.MustCompile(w).MatchString(got[i]) {
			t.Errorf("line %d:\n%s\nwant WARN and %s", i, got[i], w)
		}
	}
	if strings.Contains(out.String(), "SENTINEL") {
		t.Fatalf("a key was logged:\n%s", out.String())
	}

	// A flood: at most DefaultAuthLogRate lines per second started, and a
	// later line counts what was dropped.
	begin := time.Now()
	const flood = 200
	for range flood {
		httpCall(t, s, "/metrics", bad)
	}
	seconds := int(time.Since(begin)/time.Second) + 2
	logged := len(out.lines("authentication refused")) - len(want)
	if logged > server.DefaultAuthLogRate*seconds || logged >= flood {
		t.Fatalf("%d of %d refusals logged in under %d s", logged, flood, seconds)
	}
	// The counter counts every refusal, logged or not.
	if got, want := counterValue(t, s, `tempel_auth_refused_total{interface="http",reason="unknown login"}`), float64(flood+1); got != want {
		t.Errorf("refusals counted: %v, want %v", got, want)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), " suppressed=") {
		if time.Now().After(deadline) {
			t.Fatalf("no line counts the suppressed refusals:\n%s", out.String())
		}
		httpCall(t, s, "/metrics", bad)
		time.Sleep(100 * time.Millisecond)
	}
}

// TestAccessDevModeWarned: development mode is announced as a WARN line.
func TestAccessDevModeWarned(t *testing.T) {
	for _, dev := range []bool{true, false} {
		var out lockedBuffer
		cfg := Config{Role: RoleAggregator, Upstream: "127.0.0.1:1", Logger: slog.New(slog.NewTextHandler(&out, nil))}
		if !dev {
			cfg.UsersFile = writeUsers(t, "alice:secret-a\n")
		}
		n, err := New(cfg)
		if err != nil {
			t.Fatal(err)
		}
		n.Close()
		warned := strings.Contains(out.String(), `level=WARN msg="development mode: no --users file`)
		if warned != dev {
			t.Errorf("dev %v: warned %v:\n%s", dev, warned, out.String())
		}
	}
}

// TestAccessPprofOnDebugListener: --pprof serves profiles on the loopback
// debug listener only, never on the public one.
func TestAccessPprofOnDebugListener(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, UsersFile: writeUsers(t, "alice:secret-a\n"),
		Pprof: true, DebugListen: "127.0.0.1:0"})
	right := creds{login: "alice", key: "secret-a"}
	for _, p := range []string{"/debug/pprof/", "/debug/pprof/heap", "/debug/pprof/profile"} {
		if resp, _ := httpCall(t, s, p, right); resp.StatusCode != http.StatusNotFound {
			t.Errorf("public %s: %s, want 404", p, resp.Status)
		}
	}
	if s.n.DebugAddr() == "" || s.n.DebugAddr() == s.addr {
		t.Fatalf("debug address %q", s.n.DebugAddr())
	}
	get := func(p string) int {
		resp, err := http.Get("http://" + s.n.DebugAddr() + p)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if c := get("/debug/pprof/"); c != http.StatusOK {
		t.Errorf("debug /debug/pprof/: %d", c)
	}
	if c := get("/metrics"); c != http.StatusOK {
		t.Errorf("debug /metrics: %d", c)
	}
	// The command line may hold a key (--upstream-key): not served.
	if c := get("/debug/pprof/cmdline"); c == http.StatusOK {
		t.Errorf("debug /debug/pprof/cmdline served")
	}

	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:6060", "[::]:0", "example.com:6060"} {
		_, err := New(Config{Role: RoleAggregator, Upstream: "127.0.0.1:1", Logger: quiet(), Pprof: true, DebugListen: addr})
		if err == nil || !strings.Contains(err.Error(), "loopback") {
			t.Errorf("--debug-listen %s: %v, want a refusal", addr, err)
		}
	}
	n, err := New(Config{Role: RoleAggregator, Upstream: "127.0.0.1:1", Logger: quiet(), DebugListen: "0.0.0.0:0"})
	if err != nil || n.DebugAddr() != "" {
		t.Errorf("without --pprof: %v, debug address %q", err, n.DebugAddr())
	}
	n.Close()
}

// counterValue reads one series from the node's metrics registry.
func counterValue(t *testing.T, s *started, series string) float64 {
	t.Helper()
	v, ok := seriesValue(t, s, series)
	if !ok {
		t.Fatalf("no series %s", series)
	}
	return v
}

// seriesValue is the value of a counter series as /metrics names it,
// read from the registry; ok is false when there is no such series yet.
func seriesValue(t *testing.T, s *started, series string) (v float64, ok bool) {
	t.Helper()
	mfs, err := s.n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			var labels []string
			for _, l := range m.GetLabel() {
				labels = append(labels, l.GetName()+`="`+l.GetValue()+`"`)
			}
			if mf.GetName()+"{"+strings.Join(labels, ",")+"}" == series {
				return m.GetCounter().GetValue(), true
			}
		}
	}
	return 0, false
}
