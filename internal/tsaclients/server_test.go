// Package tsaclients runs real RFC 3161 clients against the front door of
// a real `tempel serve` with its defaults: openssl, osslsigncode,
// jarsigner, python3-rfc3161ng, pkijs and zgapdfsigner each ask
// POST /tsa for a token and check it their own way. Each token's KSI
// signature is then extended to a publication of the same server and
// verified with nothing but the publications file: a token of any
// legacy tool verifies keylessly once published.
//
// A client whose tool is missing is skipped with a message, except in CI
// (CI set), where .ci/run installs them all and a missing one fails.
package tsaclients

import (
	"bytes"
	"crypto/x509"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

var tempelBin string

func TestMain(m *testing.M) {
	flag.Parse()
	code := func() int {
		if testing.Short() {
			// Only the parsing tests run: no binary to build.
			return m.Run()
		}
		dir, err := os.MkdirTemp("", "tempel-tsaclients")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		tempelBin = filepath.Join(dir, "tempel")
		out, err := exec.Command("go", "build", "-o", tempelBin, "../../cmd/tempel").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build tempel: %v\n%s", err, out)
			return 1
		}
		defer stopServer()
		return m.Run()
	}()
	os.Exit(code)
}

// publishEvery is the server's publication period: short, so that a
// token can be extended to a publication within seconds of its issue.
const publishEvery = 5 * time.Second

// readyWait bounds a fresh server's start (a new development PKI and an
// empty calendar).
const readyWait = 30 * time.Second

// server is the one `tempel serve` the tests share: every client asks the
// same front door, as they would in production.
type server struct {
	addr    string
	dataDir string
	cmd     *exec.Cmd
	done    chan struct{}
	log     string
}

var (
	srvOnce sync.Once
	srv     *server
	srvErr  error
)

// tsaServer starts the shared server on first use and returns it.
func tsaServer(t *testing.T) *server {
	t.Helper()
	if testing.Short() {
		t.Skip("runs `tempel serve` and external clients: skipped in -short")
	}
	srvOnce.Do(func() { srv, srvErr = startServer() })
	if srvErr != nil {
		t.Fatal(srvErr)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("tempel serve, last lines of its log:\n%s", srv.logTail())
		}
	})
	return srv
}

func startServer() (*server, error) {
	dir, err := os.MkdirTemp("", "tempel-tsaclients-data")
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := l.Addr().String()
	l.Close()
	s := &server{addr: addr, dataDir: filepath.Join(dir, "data"), log: filepath.Join(dir, "serve.log"), done: make(chan struct{})}
	logf, err := os.Create(s.log)
	if err != nil {
		return nil, err
	}
	s.cmd = exec.Command(tempelBin, "serve", "--data-dir", s.dataDir, "--listen", addr, "--publish-every", publishEvery.String())
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	go func() { s.cmd.Wait(); logf.Close(); close(s.done) }()
	deadline := time.Now().Add(readyWait)
	for !s.ready() {
		select {
		case <-s.done:
			return nil, fmt.Errorf("tempel serve exited before ready:\n%s", s.logTail())
		default:
		}
		if time.Now().After(deadline) {
			s.stop()
			return nil, fmt.Errorf("tempel serve not ready within %v:\n%s", readyWait, s.logTail())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return s, nil
}

func (s *server) ready() bool {
	resp, err := http.Get(s.url("/readyz"))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (s *server) url(path string) string { return "http://" + s.addr + path }

// tsaURL is the front door's address as the clients are given it.
func (s *server) tsaURL() string { return s.url("/tsa") }

// rootPEM is the development root the TSA certificate chains to.
func (s *server) rootPEM() string { return filepath.Join(s.dataDir, "keys", "root.pem") }

// tsaPEM is the TSA certificate.
func (s *server) tsaPEM() string { return filepath.Join(s.dataDir, "keys", "tsa.pem") }

func (s *server) roots(t *testing.T) *x509.CertPool {
	t.Helper()
	b, err := os.ReadFile(s.rootPEM())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		t.Fatalf("no certificate in %s", s.rootPEM())
	}
	return pool
}

func (s *server) logTail() string {
	b, _ := os.ReadFile(s.log)
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

func (s *server) stop() {
	s.cmd.Process.Kill()
	<-s.done
	os.RemoveAll(filepath.Dir(s.dataDir))
}

func stopServer() {
	if srv != nil {
		srv.stop()
	}
}

// post sends a DER TimeStampReq to the front door as the clients do and
// returns the DER TimeStampResp.
func (s *server) post(t *testing.T, der []byte) []byte {
	t.Helper()
	resp, err := http.Post(s.tsaURL(), "application/timestamp-query", bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/timestamp-reply" {
		t.Fatalf("POST /tsa: %s, %s: %q", resp.Status, resp.Header.Get("Content-Type"), body)
	}
	return body
}

// need returns the path of tool, or skips (fails in CI) naming what
// provides it.
func need(t *testing.T, tool, from string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		missing(t, fmt.Sprintf("%s is not installed (%s)", tool, from))
	}
	return p
}

// missing skips the test outside CI and fails it in CI, where .ci/run
// installs every client.
func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s: .ci/run must install it", why)
	}
	t.Skipf("%s: skipping this client", why)
}

// run runs a command and fails the test with its output when it fails.
func run(t *testing.T, dir string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}
