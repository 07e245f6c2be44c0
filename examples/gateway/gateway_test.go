package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/node/nodetest"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// startNode runs a development Tempel node (calendar and aggregator) on
// loopback and returns its address.
func startNode(t *testing.T) string {
	t.Helper()
	cfg := node.Config{Role: node.RoleAll, DataDir: t.TempDir(), Name: "aggregator",
		RoundPeriod: 20 * time.Millisecond, PublishEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	addr, _ := nodetest.Start(t, cfg)
	return addr
}

// startGateway serves the gateway over httptest with its signing through
// the given endpoints.
func startGateway(t *testing.T, cfg config, endpoints ...string) (*httptest.Server, *batcher) {
	t.Helper()
	c, err := client.New(client.Config{Endpoints: endpoints, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	h, b, done := newGateway(context.Background(), c, cfg, slog.New(slog.DiscardHandler))
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		done()
		c.Close()
	})
	return srv, b
}

// signRequests reads how many unary Sign requests a node has answered.
func signRequests(t *testing.T, addr string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	const series = `tempel_requests_total{interface="grpc",method="Sign",status="OK"} `
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series); ok {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	return 0
}

func upload(srv *httptest.Server, doc []byte) (*http.Response, []byte, error) {
	resp, err := http.Post(srv.URL+"/documents", "application/octet-stream", bytes.NewReader(doc))
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp, b, err
}

func get(t *testing.T, url string) []byte {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s, %v", url, resp.Status, err)
	}
	return b
}

// Many concurrent uploads are signed with fewer requests than documents,
// and each stored signature verifies against its stored document.
func TestGatewayBatchesUploads(t *testing.T) {
	addr := startNode(t)
	cfg := config{dir: t.TempDir(), round: 300 * time.Millisecond, maxBatch: 1000, queue: 1000, maxDoc: 1 << 20, timeout: 30 * time.Second}
	srv, b := startGateway(t, cfg, addr)

	const n = 40
	docs := make([][]byte, n)
	answers := make([]stored, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		docs[i] = fmt.Appendf(nil, "application %d for a building permit\n", i)
		wg.Go(func() {
			resp, body, err := upload(srv, docs[i])
			if err == nil && resp.StatusCode != http.StatusCreated {
				err = fmt.Errorf("%s: %s", resp.Status, body)
			}
			if err == nil {
				err = json.Unmarshal(body, &answers[i])
			}
			errs[i] = err
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("upload %d: %v", i, err)
		}
	}

	requests := signRequests(t, addr)
	t.Logf("%d documents, %d rounds, %v Sign requests at the server", n, b.requests.Load(), requests)
	if requests < 1 || requests >= n {
		t.Fatalf("the server answered %v Sign requests for %d documents, want at least 1 and fewer than documents", requests, n)
	}
	if r := b.requests.Load(); r < 1 || r >= n {
		t.Fatalf("%d rounds for %d documents", r, n)
	}

	for i, a := range answers {
		doc := get(t, srv.URL+a.Document)
		if !bytes.Equal(doc, docs[i]) {
			t.Fatalf("document %d stored as %q, uploaded %q", i, doc, docs[i])
		}
		sig, err := ksi.ParseSignature(get(t, srv.URL+a.Signature))
		if err != nil {
			t.Fatalf("signature %d: %v", i, err)
		}
		sum := sha256.Sum256(doc)
		hash, _ := ksi.NewImprint(ksi.SHA2_256, sum[:])
		rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: hash})
		if rep.Result != verifier.OK {
			t.Fatalf("signature %d against its document: %s %s", i, rep.Code, rep.Message)
		}
		if !sig.SigningUTC().Equal(a.SignedAt) {
			t.Fatalf("document %d: answered signed_at %s, signature says %s", i, a.SignedAt, sig.SigningUTC())
		}
		other := sha256.Sum256(docs[(i+1)%n])
		otherHash, _ := ksi.NewImprint(ksi.SHA2_256, other[:])
		if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: otherHash}); rep.Result == verifier.OK {
			t.Fatalf("signature %d verifies against document %d", i, (i+1)%n)
		}
	}
}

// hungEndpoint accepts connections and never answers: signing through it
// waits until the client gives up.
func hungEndpoint(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			go io.Copy(io.Discard, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return ln.Addr().String()
}

// When rounds cannot be signed, uploads beyond the queue are refused at
// once with 503, too-large documents with 413, and no document whose
// upload failed is kept.
func TestGatewayRefusesAndKeepsNothingUnsigned(t *testing.T) {
	cfg := config{dir: t.TempDir(), round: 10 * time.Millisecond, maxBatch: 1, queue: 2, maxDoc: 1 << 10, timeout: 2 * time.Second}
	srv, _ := startGateway(t, cfg, hungEndpoint(t))

	resp, body, err := upload(srv, make([]byte, 2<<10))
	if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("2 KiB document with a 1 KiB limit: %v %s %v, want 413", resp.Status, body, err)
	}

	// Four rounds hang in flight, a fifth waits to start, two uploads
	// queue: of 20, at least 13 are refused, and at once.
	const n = 20
	var mu sync.Mutex
	var busy, unavailable int
	var wg sync.WaitGroup
	start := time.Now()
	var firstBusy time.Duration
	for i := range n {
		wg.Go(func() {
			resp, body, err := upload(srv, fmt.Appendf(nil, "document %d", i))
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			switch {
			case resp.StatusCode == http.StatusServiceUnavailable && resp.Header.Get("Retry-After") != "":
				busy++
				if firstBusy == 0 {
					firstBusy = time.Since(start)
				}
			case resp.StatusCode == http.StatusServiceUnavailable:
				unavailable++
			default:
				t.Errorf("upload %d: %s %s, want 503", i, resp.Status, body)
			}
		})
	}
	wg.Wait()
	t.Logf("%d refused as busy (first after %s), %d failed after the timeout", busy, firstBusy, unavailable)
	if busy < n-7 {
		t.Fatalf("%d of %d uploads refused as busy, want at least %d", busy, n, n-7)
	}
	if firstBusy >= cfg.timeout {
		t.Fatalf("first refusal after %s, not at once (timeout %s)", firstBusy, cfg.timeout)
	}
	left, err := os.ReadDir(cfg.dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range left {
		t.Errorf("kept %s after a failed upload", filepath.Join(cfg.dir, e.Name()))
	}
}
