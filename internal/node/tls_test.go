package node

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/verifier"
)

// devRoots returns the development root of a node's data directory.
func devRoots(t *testing.T, dataDir string) (string, *x509.CertPool) {
	t.Helper()
	path := filepath.Join(dataDir, "keys", pki.RootCertFile)
	pool, err := pki.LoadCertPool(path)
	if err != nil {
		t.Fatal(err)
	}
	return path, pool
}

func tlsSDK(t *testing.T, addr string, roots *x509.CertPool) *client.Client {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: []string{"https://" + addr}, TLS: &tls.Config{RootCAs: roots}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// TestTLSEveryInterface serves a development node over TLS (--tls) and
// uses every interface through it: gRPC with the SDK, REST, KSI PDU, the
// publications file and metrics with Go's http.Client, which offers h2
// and http/1.1 and so must be answered by the HTTP server.
func TestTLSEveryInterface(t *testing.T) {
	dir := t.TempDir()
	n := start(t, Config{Role: RoleAll, DataDir: dir, PublishEvery: time.Hour, TLS: TLSConfig{Dev: true}})
	_, roots := devRoots(t, dir)
	if got := n.n.TLSCertFile(); got != filepath.Join(dir, "keys", pki.TLSCertFile) {
		t.Fatalf("TLSCertFile %q", got)
	}

	sig, err := tlsSDK(t, n.addr, roots).Sign(context.Background(), docHash("over TLS"))
	if err != nil {
		t.Fatalf("SDK Sign over TLS: %v", err)
	}
	if len(sig.Chains()) == 0 {
		t.Fatal("empty signature")
	}
	// Plaintext gRPC to a TLS server fails.
	plain, err := client.New(client.Config{Endpoints: []string{n.addr}, Timeout: 3 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer plain.Close()
	if _, err := plain.Sign(context.Background(), docHash("plain")); err == nil {
		t.Fatal("plaintext gRPC call answered by a TLS server")
	}
	// And the development root is needed: the system roots do not trust it.
	if _, err := tlsSDK(t, n.addr, nil).Sign(context.Background(), docHash("untrusted")); err == nil || !strings.Contains(err.Error(), "x509") {
		t.Fatalf("Sign without the development root: %v", err)
	}

	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots}, ForceAttemptHTTP2: true}}
	base := "https://localhost" + n.addr[strings.LastIndex(n.addr, ":"):]
	do := func(method, path, body string) []byte {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != http.StatusOK || resp.Proto != "HTTP/1.1" || resp.TLS == nil || resp.TLS.Version != tls.VersionTLS13 {
			t.Fatalf("%s %s: %s %s (want 200 over HTTP/1.1 and TLS 1.3): %.200s", method, path, resp.Status, resp.Proto, b)
		}
		return b
	}
	if b := do("POST", "/v1/sign", `{"hash":"SHA-256:11a700b0c8066c47ecba05ed37bc14dcadb238552d86c659342d1d7e87b8772d"}`); !strings.Contains(string(b), `"signature"`) {
		t.Fatalf("REST sign: %s", b)
	}

	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.AggregationRequest{{RequestID: 7, Hash: docHash("LAPTOP")}}}
	raw, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	out, err := pdu.ParseAggregatorResponse(do("POST", "/gt-signingservice", string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if len(out.Responses) != 1 || out.Responses[0].Status != 0 {
		t.Fatalf("PDU over TLS: %+v", out.Responses)
	}

	pf, err := ksi.ParsePublicationsFile(do("GET", "/publications.bin", ""))
	if err != nil {
		t.Fatalf("publications file over TLS: %v", err)
	}
	if len(pf.Certificates) == 0 {
		t.Fatal("publications file without certificates")
	}
	if b := do("GET", "/metrics", ""); !strings.Contains(string(b), "tempel_calendar_leaves_appended_total") {
		t.Fatal("metrics over TLS lack the calendar's")
	}
}

// TestTLSUpstream runs an aggregator whose parent is a TLS calendar
// (--upstream https://...), trusting the calendar's development root.
func TestTLSUpstream(t *testing.T) {
	calDir := t.TempDir()
	cal := start(t, Config{Role: RoleCalendar, DataDir: calDir, PublishEvery: time.Hour, TLS: TLSConfig{Dev: true}})
	rootFile, _ := devRoots(t, calDir)
	agg := start(t, Config{Role: RoleAggregator, Upstream: "https://" + cal.addr, Name: "gw",
		TLS: TLSConfig{UpstreamCAFiles: []string{rootFile}}})

	// The aggregator itself serves plaintext on loopback.
	c, err := client.New(client.Config{Endpoints: []string{agg.addr}, Timeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	sig, err := c.Sign(context.Background(), docHash("through a TLS parent"))
	if err != nil {
		t.Fatalf("Sign through an aggregator with a TLS upstream: %v", err)
	}
	if len(sig.Chains()) != 2 {
		t.Fatalf("%d aggregation chains, want 2 (aggregator, calendar)", len(sig.Chains()))
	}
	rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: docHash("through a TLS parent")})
	if rep.Result != verifier.OK {
		t.Fatalf("%s %s", rep.Code, rep.Message)
	}

	// Without the calendar's root the link is refused: the aggregator
	// answers its callers with an error rather than talking in the clear.
	bad := start(t, Config{Role: RoleAggregator, Upstream: "https://" + cal.addr, Name: "gw2"})
	cb, err := client.New(client.Config{Endpoints: []string{bad.addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cb.Close()
	if _, err := cb.Sign(context.Background(), docHash("x")); err == nil {
		t.Fatal("signed through an upstream whose certificate is not trusted")
	}
}

func TestTLSConfigErrors(t *testing.T) {
	dir := t.TempDir()
	certFile := filepath.Join(dir, "c.pem")
	os.WriteFile(certFile, []byte("not a certificate"), 0o644)
	for _, tc := range []struct {
		name string
		cfg  TLSConfig
		want string
	}{
		{"cert without key", TLSConfig{CertFile: certFile}, "--tls-cert and --tls-key go together"},
		{"both dev and files", TLSConfig{Dev: true, CertFile: certFile, KeyFile: certFile}, "not both"},
		{"bad cert file", TLSConfig{CertFile: certFile, KeyFile: certFile}, "c.pem"},
		{"client CA without TLS", TLSConfig{ClientCAFile: certFile}, "--tls-client-ca needs TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// An aggregator: no PKI to create, so the case is quick.
			_, err := New(Config{Role: RoleAggregator, Upstream: "127.0.0.1:1", DataDir: t.TempDir(), Logger: quiet(), TLS: tc.cfg})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("New: %v, want an error containing %q", err, tc.want)
			}
		})
	}
	_, err := New(Config{Role: RoleAggregator, Upstream: "127.0.0.1:1", Logger: quiet(), TLS: TLSConfig{UpstreamCAFiles: []string{certFile}}})
	if err == nil || !strings.Contains(err.Error(), "--upstream https://") {
		t.Fatalf("upstream CA with a plaintext upstream: %v", err)
	}
}

// writeClientCert issues a client certificate from a fresh CA and writes
// ca.pem, client.pem and client.key (0600) into dir.
func writeClientCert(t *testing.T, dir, cn string) (caFile, certFile, keyFile string) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "client CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	caFile, certFile, keyFile = filepath.Join(dir, "ca.pem"), filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return caFile, certFile, keyFile
}

// TestTLSUpstreamClientCertificate: a calendar that requires client
// certificates (--tls-client-ca) serves an aggregator that presents one
// (--upstream-tls-cert/-key) and refuses one that does not.
func TestTLSUpstreamClientCertificate(t *testing.T) {
	calDir := t.TempDir()
	caFile, certFile, keyFile := writeClientCert(t, t.TempDir(), "gateway-1")
	cal := start(t, Config{Role: RoleCalendar, DataDir: calDir, PublishEvery: time.Hour, TLS: TLSConfig{Dev: true, ClientCAFile: caFile}})
	rootFile, _ := devRoots(t, calDir)

	sign := func(up TLSConfig) error {
		agg := start(t, Config{Role: RoleAggregator, Upstream: "https://" + cal.addr, Name: "gw", TLS: up})
		c, err := client.New(client.Config{Endpoints: []string{agg.addr}, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_, err = c.Sign(context.Background(), docHash("mutual TLS"))
		return err
	}
	if err := sign(TLSConfig{UpstreamCAFiles: []string{rootFile}, UpstreamCertFile: certFile, UpstreamKeyFile: keyFile}); err != nil {
		t.Fatalf("with a client certificate: %v", err)
	}
	if err := sign(TLSConfig{UpstreamCAFiles: []string{rootFile}}); err == nil {
		t.Fatal("signed through a parent that requires a client certificate, without one")
	}
}
