package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/peer"
)

// testCA issues certificates for the tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return &testCA{cert: cert, key: key, pool: pool}
}

func (ca *testCA) issue(t *testing.T, cn string, usage x509.ExtKeyUsage) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, key.Public(), ca.key)
	if err != nil {
		t.Fatal(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// seen records what the handlers saw of their callers.
type seen struct {
	mu       sync.Mutex
	grpcPeer *peer.Peer
}

// serveTLS runs Serve with TLS on a loopback port: a gRPC health service
// and an HTTP handler that answers with the request's protocol and TLS
// state.
func serveTLS(t *testing.T, cfg *tls.Config) (string, *seen) {
	t.Helper()
	return serveTLSWith(t, Options{TLS: cfg})
}

// serveTLSWith is serveTLS with the server's options (opts.TLS set).
func serveTLSWith(t *testing.T, opts Options) (string, *seen) {
	t.Helper()
	s := &seen{}
	g := grpc.NewServer(grpc.Creds(GRPCCredentials()), grpc.UnaryInterceptor(
		func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			p, _ := peer.FromContext(ctx)
			s.mu.Lock()
			s.grpcPeer = p
			s.mu.Unlock()
			return h(ctx, req)
		}))
	healthpb.RegisterHealthServer(g, health.NewServer())
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		clientCN := ""
		if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
			clientCN = r.TLS.PeerCertificates[0].Subject.CommonName
		}
		fmt.Fprintf(w, "%s tls=%v alpn=%q client=%q", r.Proto, r.TLS != nil, tlsALPN(r.TLS), clientCN)
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts.ShutdownGrace, opts.Logger = time.Second, log
	go func() { done <- Serve(ctx, ln, g, h, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String(), s
}

func tlsALPN(s *tls.ConnectionState) string {
	if s == nil {
		return ""
	}
	return s.NegotiatedProtocol
}

// httpsClient offers h2 and http/1.1, as Go's http.Client does by default.
func httpsClient(roots *x509.CertPool, certs ...tls.Certificate) *http.Client {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: roots, Certificates: certs}, ForceAttemptHTTP2: true}
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

func get(c *http.Client, url string) (string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), err
}

func grpcCheck(t *testing.T, addr string, creds credentials.TransportCredentials) error {
	t.Helper()
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = healthpb.NewHealthClient(cc).Check(ctx, &healthpb.HealthCheckRequest{})
	return err
}

func TestTLSRoutesByALPN(t *testing.T) {
	ca := newTestCA(t)
	addr, s := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server", x509.ExtKeyUsageServerAuth)}})

	// Go's http.Client offers h2 and http/1.1: it lands on the HTTP
	// server, over TLS 1.3.
	body, err := get(httpsClient(ca.pool), "https://"+addr+"/x")
	if err != nil {
		t.Fatal(err)
	}
	if want := `HTTP/1.1 tls=true alpn="http/1.1"`; !strings.HasPrefix(body, want) {
		t.Fatalf("HTTP over TLS answered %q, want %q", body, want)
	}

	// A client offering no ALPN is served HTTP/1.1 as well.
	conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: ca.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	if v := conn.ConnectionState().Version; v != tls.VersionTLS13 {
		t.Errorf("negotiated version %x, want TLS 1.3", v)
	}
	fmt.Fprintf(conn, "GET /y HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(conn)
	conn.Close()
	if !strings.HasPrefix(string(raw), "HTTP/1.1 200") || !strings.Contains(string(raw), `alpn=""`) {
		t.Fatalf("no-ALPN client got %q", raw)
	}

	// A gRPC client offers only h2: it lands on the gRPC server, whose
	// handlers see the TLS state.
	if err := grpcCheck(t, addr, credentials.NewTLS(&tls.Config{RootCAs: ca.pool})); err != nil {
		t.Fatalf("gRPC over TLS: %v", err)
	}
	s.mu.Lock()
	p := s.grpcPeer
	s.mu.Unlock()
	info, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok {
		t.Fatalf("gRPC peer auth info %T, want credentials.TLSInfo", p.AuthInfo)
	}
	if info.State.NegotiatedProtocol != "h2" || !info.State.HandshakeComplete || info.SecurityLevel != credentials.PrivacyAndIntegrity {
		t.Fatalf("gRPC peer TLS state: alpn %q complete %v level %v", info.State.NegotiatedProtocol, info.State.HandshakeComplete, info.SecurityLevel)
	}

	// Plaintext gRPC and HTTP get nowhere.
	if err := grpcCheck(t, addr, insecure.NewCredentials()); err == nil {
		t.Fatal("plaintext gRPC call answered by a TLS server")
	}
	if body, err := get(&http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/x"); err == nil {
		t.Fatalf("plaintext HTTP answered %q by a TLS server", body)
	}
}

func TestTLSMinimumVersion(t *testing.T) {
	ca := newTestCA(t)
	cert := ca.issue(t, "server", x509.ExtKeyUsageServerAuth)
	addr, _ := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}})
	old := &tls.Config{RootCAs: ca.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12}
	if c, err := tls.Dial("tcp", addr, old); err == nil {
		c.Close()
		t.Fatal("TLS 1.2 client accepted by default")
	}
	// Allowed explicitly.
	addr12, _ := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
	c, err := tls.Dial("tcp", addr12, old)
	if err != nil {
		t.Fatalf("TLS 1.2 with MinVersion 1.2: %v", err)
	}
	c.Close()
}

func TestTLSClientCertificateRequired(t *testing.T) {
	ca := newTestCA(t)
	clientCA := newTestCA(t)
	addr, s := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server", x509.ExtKeyUsageServerAuth)},
		ClientCAs: clientCA.pool, ClientAuth: tls.RequireAndVerifyClientCert})
	good := clientCA.issue(t, "gateway-1", x509.ExtKeyUsageClientAuth)
	stranger := ca.issue(t, "stranger", x509.ExtKeyUsageClientAuth) // issued by a CA the server does not trust

	if _, err := get(httpsClient(ca.pool), "https://"+addr+"/x"); err == nil {
		t.Fatal("HTTP without a client certificate answered")
	}
	if _, err := get(httpsClient(ca.pool, stranger), "https://"+addr+"/x"); err == nil {
		t.Fatal("HTTP with an untrusted client certificate answered")
	}
	body, err := get(httpsClient(ca.pool, good), "https://"+addr+"/x")
	if err != nil || !strings.Contains(body, `client="gateway-1"`) {
		t.Fatalf("HTTP with a client certificate: %q, %v", body, err)
	}

	if err := grpcCheck(t, addr, credentials.NewTLS(&tls.Config{RootCAs: ca.pool})); err == nil {
		t.Fatal("gRPC without a client certificate answered")
	}
	if err := grpcCheck(t, addr, credentials.NewTLS(&tls.Config{RootCAs: ca.pool, Certificates: []tls.Certificate{good}})); err != nil {
		t.Fatalf("gRPC with a client certificate: %v", err)
	}
	s.mu.Lock()
	info := s.grpcPeer.AuthInfo.(credentials.TLSInfo)
	s.mu.Unlock()
	if len(info.State.PeerCertificates) == 0 || info.State.PeerCertificates[0].Subject.CommonName != "gateway-1" {
		t.Fatal("gRPC handler does not see the client certificate")
	}
}

// TestTLSHandshakeTimeout: a client that connects and sends nothing is
// dropped after the handshake timeout, and meanwhile others are served.
func TestTLSHandshakeTimeout(t *testing.T) {
	ca := newTestCA(t)
	addr, _ := serveTLSWith(t, Options{TLS: &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server", x509.ExtKeyUsageServerAuth)}},
		TLSHandshakeTimeout: 300 * time.Millisecond})

	var idle []net.Conn
	for range 20 {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		idle = append(idle, c)
	}
	if _, err := get(httpsClient(ca.pool), "https://"+addr+"/x"); err != nil {
		t.Fatalf("served while others idle: %v", err)
	}
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		_, err := c.Read(make([]byte, 1))
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			t.Fatal("idle connection still open after 10 s; the handshake timeout is 300 ms")
		}
		c.Close()
	}
}

// TestTLSOpenSSL checks the ALPN choice with another TLS stack.
func TestTLSOpenSSL(t *testing.T) {
	openssl, err := exec.LookPath("openssl")
	if err != nil {
		t.Skip("openssl not installed")
	}
	if testing.Short() {
		t.Skip("runs openssl")
	}
	ca := newTestCA(t)
	addr, _ := serveTLS(t, &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server", x509.ExtKeyUsageServerAuth)}})
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(caFile, pemCert(ca.cert), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ offer, want string }{
		{"h2,http/1.1", "ALPN protocol: http/1.1"},
		{"http/1.1", "ALPN protocol: http/1.1"},
		{"h2", "ALPN protocol: h2"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		cmd := exec.CommandContext(ctx, openssl, "s_client", "-connect", addr, "-servername", "localhost",
			"-alpn", tc.offer, "-CAfile", caFile, "-verify_return_error")
		cmd.Stdin = strings.NewReader("")
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("openssl -alpn %s: %v\n%s", tc.offer, err, out)
		}
		if !strings.Contains(string(out), tc.want) || !strings.Contains(string(out), "TLSv1.3") {
			t.Errorf("openssl -alpn %s: want %q over TLSv1.3 in\n%s", tc.offer, tc.want, out)
		}
	}
}

func pemCert(c *x509.Certificate) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
}
