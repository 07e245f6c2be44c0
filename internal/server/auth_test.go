package server

import (
	"bytes"
	"encoding/base64"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

func basic(login, key string) []string {
	return []string{"Basic " + base64.StdEncoding.EncodeToString([]byte(login+":"+key))}
}

// syncBuffer collects log output written from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAuthenticateBasic(t *testing.T) {
	prod, err := ParseUsers([]byte("alice:secret-a\n"))
	if err != nil {
		t.Fatal(err)
	}
	access := func(iface, route string) Access {
		if route == "/public" {
			return Public
		}
		return NeedCredentials
	}
	for _, tc := range []struct {
		name      string
		users     *Users
		route     string
		auth      []string
		wantLogin string // "" means refused
		wantErr   error
	}{
		{"prod none", prod, "/x", nil, "", ErrNoAuth},
		{"prod right", prod, "/x", basic("alice", "secret-a"), "alice", nil},
		{"prod wrong key", prod, "/x", basic("alice", "secret-b"), "", ErrAuth},
		{"prod unknown login", prod, "/x", basic("mallory", "secret-a"), "", ErrAuth},
		{"prod empty key", prod, "/x", basic("alice", ""), "", ErrAuth},
		{"prod two values", prod, "/x", append(basic("alice", "secret-a"), basic("alice", "secret-a")...), "", ErrAuth},
		{"prod bearer", prod, "/x", []string{"Bearer secret-a"}, "", ErrAuth},
		{"prod bad base64", prod, "/x", []string{"Basic !!!"}, "", ErrAuth},
		{"prod no colon", prod, "/x", []string{"Basic " + base64.StdEncoding.EncodeToString([]byte("alice"))}, "", ErrAuth},
		{"prod public none", prod, "/public", nil, Anonymous, nil},
		{"prod public wrong", prod, "/public", basic("alice", "nope"), Anonymous, nil},
		{"dev none", DevUsers(), "/x", nil, Anonymous, nil},
		{"dev anon", DevUsers(), "/x", basic("anon", "anon"), "anon", nil},
		{"dev anon wrong", DevUsers(), "/x", basic("anon", "wrong"), "", ErrAuth},
		{"dev someone", DevUsers(), "/x", basic("someone", "x"), "", ErrAuth},
		{"dev malformed", DevUsers(), "/x", []string{"Basic"}, "", ErrAuth},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := NewAuthenticator(AuthConfig{Users: tc.users, Access: access})
			id, err := a.Authenticate(AuthRequest{Interface: IfaceGRPC, Route: tc.route, Remote: "127.0.0.1:1", Authorization: tc.auth})
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("err %v, want %v", err, tc.wantErr)
				}
				return
			}
			if err != nil || id.Login != tc.wantLogin {
				t.Fatalf("identity %q, err %v; want %q", id.Login, err, tc.wantLogin)
			}
		})
	}
}

func signedPDU(t *testing.T, alg ksi.HashAlg, login, key string) *pdu.Envelope {
	t.Helper()
	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: login}},
		Requests: []pdu.AggregationRequest{{RequestID: 1, Hash: append(ksi.Imprint{byte(ksi.SHA2_256)}, make([]byte, 32)...)}}}
	raw, err := req.Encode(alg, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	parsed, err := pdu.ParseAggregatorRequest(raw)
	if err != nil {
		t.Fatal(err)
	}
	return &parsed.Envelope
}

func TestAuthenticatePDU(t *testing.T) {
	users, _ := ParseUsers([]byte("alice:secret-a\n"))
	strict := NewAuthenticator(AuthConfig{Users: users})
	weakOK := NewAuthenticator(AuthConfig{Users: users, AllowWeakHMAC: true})
	req := func(env *pdu.Envelope) AuthRequest {
		return AuthRequest{Interface: IfacePDU, Route: "/gt-signingservice", Remote: "127.0.0.1:1", PDU: env}
	}
	for _, alg := range []ksi.HashAlg{ksi.SHA2_256, ksi.SHA2_384, ksi.SHA2_512, ksi.SHA3_256, ksi.SHA3_512} {
		id, err := strict.Authenticate(req(signedPDU(t, alg, "alice", "secret-a")))
		if err != nil || id.Login != "alice" || string(id.Key) != "secret-a" {
			t.Errorf("%s: %+v %v", alg, id, err)
		}
	}
	for _, alg := range []ksi.HashAlg{ksi.SHA1, ksi.RIPEMD160, ksi.SHA3_224} {
		_, err := strict.Authenticate(req(signedPDU(t, alg, "alice", "secret-a")))
		if !errors.Is(err, ErrWeakHMAC) || !strings.Contains(err.Error(), alg.String()) {
			t.Errorf("%s refused with %v, want ErrWeakHMAC naming the algorithm", alg, err)
		}
		if id, err := weakOK.Authenticate(req(signedPDU(t, alg, "alice", "secret-a"))); err != nil || id.Login != "alice" {
			t.Errorf("%s with AllowWeakHMAC: %v", alg, err)
		}
		// Allowing weak algorithms does not skip the HMAC check.
		if _, err := weakOK.Authenticate(req(signedPDU(t, alg, "alice", "wrong"))); !errors.Is(err, ErrAuth) {
			t.Errorf("%s wrong key with AllowWeakHMAC: %v", alg, err)
		}
	}
	for name, env := range map[string]*pdu.Envelope{
		"wrong key":     signedPDU(t, ksi.SHA2_256, "alice", "secret-b"),
		"unknown login": signedPDU(t, ksi.SHA2_256, "mallory", "secret-a"),
		"empty login":   signedPDU(t, ksi.SHA2_256, "", ""),
	} {
		if _, err := strict.Authenticate(req(env)); !errors.Is(err, ErrAuth) {
			t.Errorf("%s: %v, want ErrAuth", name, err)
		}
	}
	if _, err := strict.Authenticate(req(nil)); !errors.Is(err, ErrNoAuth) {
		t.Errorf("no envelope: %v", err)
	}
	// Development mode: anon/anon only.
	dev := NewAuthenticator(AuthConfig{})
	if _, err := dev.Authenticate(req(signedPDU(t, ksi.SHA2_256, "anon", "anon"))); err != nil {
		t.Errorf("dev anon/anon: %v", err)
	}
	if _, err := dev.Authenticate(req(signedPDU(t, ksi.SHA2_256, "anon", "wrong"))); !errors.Is(err, ErrAuth) {
		t.Errorf("dev anon/wrong: %v", err)
	}
}

// TestAuthLogged checks what a refusal logs: login, remote address,
// interface, route and reason, never the key.
func TestAuthLogged(t *testing.T) {
	var out syncBuffer
	users, _ := ParseUsers([]byte("alice:secret-a\n"))
	a := NewAuthenticator(AuthConfig{Users: users, Log: NewAuthLog(slog.New(slog.NewTextHandler(&out, nil)), 100)})
	a.Authenticate(AuthRequest{Interface: IfaceREST, Route: "/v1/sign", Remote: "192.0.2.7:4242", Authorization: basic("alice", "KEY-SENTINEL")})
	a.Authenticate(AuthRequest{Interface: IfacePDU, Route: "/gt-signingservice", Remote: "192.0.2.8:1", PDU: signedPDU(t, ksi.SHA1, "bob", "PDU-KEY-SENTINEL")})
	a.Authenticate(AuthRequest{Interface: IfaceGRPC, Route: "/tempel.v1.Signer/Sign", Remote: "192.0.2.9:1"})
	if _, err := a.Authenticate(AuthRequest{Interface: IfaceGRPC, Route: "/x", Authorization: basic("alice", "secret-a")}); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		`level=WARN msg="authentication refused" interface=rest login=alice remote=192.0.2.7:4242 route=/v1/sign reason="wrong key"`,
		`level=WARN msg="authentication refused" interface=pdu login=bob remote=192.0.2.8:1 route=/gt-signingservice reason="weak HMAC algorithm SHA-1"`,
		`level=WARN msg="authentication refused" interface=grpc login="" remote=192.0.2.9:1 route=/tempel.v1.Signer/Sign reason="no credentials"`,
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines, want %d (successes are not logged):\n%s", len(lines), len(want), out.String())
	}
	for i, w := range want {
		if !strings.Contains(lines[i], w) {
			t.Errorf("line %d:\n%s\nwant it to contain\n%s", i, lines[i], w)
		}
	}
	if strings.Contains(out.String(), "SENTINEL") || strings.Contains(out.String(), "secret-a") {
		t.Errorf("the log shows a key:\n%s", out.String())
	}
}

func TestAuthLogRateLimited(t *testing.T) {
	var out syncBuffer
	l := NewAuthLog(slog.New(slog.NewTextHandler(&out, nil)), 3)
	now := time.Unix(1_700_000_000, 0)
	l.now = func() time.Time { return now }
	for range 10 {
		l.Refused(IfaceHTTP, "/metrics", "eve", "198.51.100.1:1", "wrong key")
	}
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Fatalf("%d lines in one second, want 3:\n%s", n, out.String())
	}
	if strings.Contains(out.String(), "suppressed") {
		t.Fatalf("nothing was suppressed yet:\n%s", out.String())
	}
	now = now.Add(999 * time.Millisecond)
	l.Refused(IfaceHTTP, "/metrics", "eve", "198.51.100.1:1", "wrong key")
	if n := strings.Count(out.String(), "\n"); n != 3 {
		t.Fatalf("%d lines within the second, want 3", n)
	}
	now = now.Add(time.Millisecond)
	l.Refused(IfaceHTTP, "/metrics", "eve", "198.51.100.1:1", "wrong key")
	l.Refused(IfaceHTTP, "/metrics", "eve", "198.51.100.1:1", "wrong key")
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if len(lines) != 5 {
		t.Fatalf("%d lines after the second, want 5:\n%s", len(lines), out.String())
	}
	if !strings.HasSuffix(lines[3], " suppressed=8") || strings.Contains(lines[4], "suppressed") {
		t.Fatalf("the first line of the next second must count the 8 dropped lines, the one after none:\n%s", out.String())
	}
	// A clock stepped back starts a new window instead of muting the log.
	now = now.Add(-time.Hour)
	l.Refused(IfaceHTTP, "/metrics", "eve", "198.51.100.1:1", "wrong key")
	if n := strings.Count(out.String(), "\n"); n != 6 {
		t.Fatalf("%d lines after a clock step back, want 6", n)
	}
}

func TestAuthLogBoundsLogin(t *testing.T) {
	var out syncBuffer
	l := NewAuthLog(slog.New(slog.NewTextHandler(&out, nil)), 0)
	l.Refused(IfaceGRPC, "/x", strings.Repeat("A", 10_000)+"\xff", "127.0.0.1:1", "unknown login")
	if len(out.String()) > 400 || !strings.Contains(out.String(), strings.Repeat("A", 64)+"...") {
		t.Fatalf("long login not bounded: %d bytes", len(out.String()))
	}
}
