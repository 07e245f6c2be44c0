package node

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/asn1"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
)

func needOpenSSL(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("openssl is not installed in CI (.ci/run installs it)")
		}
		t.Skip("openssl not installed: the RFC 3161 interoperability tests need it")
	}
	return p
}

func postTSA(t *testing.T, addr string, der []byte, contentType string) (*http.Response, []byte) {
	t.Helper()
	resp, err := http.Post("http://"+addr+"/tsa", contentType, bytes.NewReader(der))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

// The front door of a node with its defaults: openssl asks, POST /tsa
// answers, openssl verifies the token against the document and the
// node's development root (and refuses a changed document); the token's
// KSI signature verifies with the document's hash alone, and its genTime
// is its aggregation time. Many requests at once all get tokens, each
// from the same rounds as any signing request.
func TestTSAFrontDoor(t *testing.T) {
	openssl := needOpenSSL(t)
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir()})
	dir := t.TempDir()
	doc := filepath.Join(dir, "doc.txt")
	if err := os.WriteFile(doc, []byte("a court decision\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tsq := filepath.Join(dir, "q.tsq")
	if out, err := exec.Command(openssl, "ts", "-query", "-data", doc, "-sha256", "-cert", "-out", tsq).CombinedOutput(); err != nil {
		t.Fatalf("openssl ts -query: %v\n%s", err, out)
	}
	der, err := os.ReadFile(tsq)
	if err != nil {
		t.Fatal(err)
	}
	resp, body := postTSA(t, s.addr, der, "application/timestamp-query")
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/timestamp-reply" {
		t.Fatalf("POST /tsa: %s, %s", resp.Status, resp.Header.Get("Content-Type"))
	}
	tsr := filepath.Join(dir, "r.tsr")
	if err := os.WriteFile(tsr, body, 0o600); err != nil {
		t.Fatal(err)
	}
	root := s.n.Keys().RootPath
	if out, err := exec.Command(openssl, "ts", "-verify", "-in", tsr, "-data", doc, "-CAfile", root).CombinedOutput(); err != nil {
		t.Fatalf("openssl ts -verify: %v\n%s", err, out)
	}
	other := filepath.Join(dir, "other.txt")
	os.WriteFile(other, []byte("another decision\n"), 0o600)
	if out, err := exec.Command(openssl, "ts", "-verify", "-in", tsr, "-data", other, "-CAfile", root).CombinedOutput(); err == nil {
		t.Fatalf("openssl verified the token against another document:\n%s", out)
	}

	tok, err := tsp.ParseResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	ksig, err := tok.KSI()
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256([]byte("a court decision\n"))
	rep := verifier.Verify(context.Background(), ksig, verifier.Internal, verifier.Options{Document: append([]byte{1}, sum[:]...)})
	if err := rep.Err(); err != nil {
		t.Fatalf("the token's KSI signature with the document's hash: %v", err)
	}
	if got, want := uint64(tok.GenTime.Unix()), ksig.SigningTime(); got != want {
		t.Fatalf("genTime %d, aggregation time %d", got, want)
	}

	// Forty at once, as a registry's batch would come.
	var wg sync.WaitGroup
	errs := make(chan string, 40)
	for i := range 40 {
		wg.Go(func() {
			d := sha256.Sum256([]byte{byte(i)})
			q := tsaQuery(t, d[:])
			resp, body := postTSA(t, s.addr, q, "application/timestamp-query")
			if resp.StatusCode != 200 {
				errs <- resp.Status
				return
			}
			tok, err := tsp.ParseResponse(body)
			if err != nil {
				errs <- err.Error()
				return
			}
			if k, err := tok.KSI(); err != nil || uint64(tok.GenTime.Unix()) != k.SigningTime() {
				errs <- "genTime is not the aggregation time"
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
}

// tsaQuery is a DER TimeStampReq for a SHA-256 digest, with certReq.
func tsaQuery(t *testing.T, digest []byte) []byte {
	t.Helper()
	// SEQUENCE { INTEGER 1, SEQUENCE { SEQUENCE { OID sha256, NULL }, OCTET STRING digest }, BOOLEAN TRUE }
	imprint := append([]byte{0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05, 0x00, 0x04, 0x20}, digest...)
	body := append([]byte{0x02, 0x01, 0x01}, imprint...)
	body = append(body, 0x01, 0x01, 0xff)
	return append([]byte{0x30, byte(len(body))}, body...)
}

// Bad requests get a rejection naming what was wrong, never a 500; other
// methods and content types are refused by HTTP.
func TestTSARefusals(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir()})
	resp, body := postTSA(t, s.addr, []byte("not DER"), "application/timestamp-query")
	if resp.StatusCode != 200 {
		t.Fatalf("a malformed request: %s, want 200 with a rejection", resp.Status)
	}
	if _, err := tsp.ParseResponse(body); err == nil || !strings.Contains(err.Error(), "badDataFormat") {
		t.Fatalf("a malformed request: %v, want a rejection with badDataFormat", err)
	}
	if resp, _ := postTSA(t, s.addr, tsaQuery(t, make([]byte, 32)), "text/plain"); resp.StatusCode != http.StatusUnsupportedMediaType {
		t.Fatalf("text/plain: %s", resp.Status)
	}
	if resp, _ := postTSA(t, s.addr, make([]byte, tsp.MaxRequestSize+1), "application/timestamp-query"); resp.StatusCode != http.StatusRequestEntityTooLarge {
		t.Fatalf("an oversized request: %s", resp.Status)
	}
	r, err := http.Get("http://" + s.addr + "/tsa")
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("GET /tsa: %s", r.Status)
	}
}

// The policies configured are the TSA's: the first goes to requests that
// name none; the qualified statement is in every token when asked for.
func TestTSAPolicies(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), TSAPolicies: []asn1.ObjectIdentifier{{1, 2, 3, 4}, {1, 2, 3, 5}}, TSAQCStatement: true})
	d := sha256.Sum256([]byte("TestTSAPolicies"))
	resp, body := postTSA(t, s.addr, tsaQuery(t, d[:]), "application/timestamp-query")
	if resp.StatusCode != 200 {
		t.Fatal(resp.Status)
	}
	tok, err := tsp.ParseResponse(body)
	if err != nil {
		t.Fatal(err)
	}
	if !tok.Policy.Equal(asn1.ObjectIdentifier{1, 2, 3, 4}) {
		t.Fatalf("policy %v, want 1.2.3.4", tok.Policy)
	}
	// esi4-qtstStatement-1 (0.4.0.19422.1.1) in the TSTInfo.
	if !bytes.Contains(tok.TSTInfo, []byte{0x06, 0x07, 0x04, 0x00, 0x81, 0x97, 0x5e, 0x01, 0x01}) {
		t.Fatal("the TSTInfo does not carry the qualified time-stamp statement")
	}
}

// A token and a native signature asked for at once go through the same
// rounds: when they land in the same second, they share its calendar
// leaf (one round tree, one calendar leaf, whatever the mix).
func TestTSAOneLeafPerSecond(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir()})
	conn := dial(t, s.addr)
	for try := range 5 {
		var wg sync.WaitGroup
		var tok *tsp.Token
		var native *ksi.Signature
		wg.Go(func() {
			d := sha256.Sum256(fmt.Appendf(nil, "token %d", try))
			_, body := postTSA(t, s.addr, tsaQuery(t, d[:]), "application/timestamp-query")
			var err error
			if tok, err = tsp.ParseResponse(body); err != nil {
				t.Error(err)
			}
		})
		wg.Go(func() {
			resp := &tempelv1.SignResponse{}
			if err := conn.Invoke(context.Background(), tempelv1.Signer_Sign_FullMethodName, &tempelv1.SignRequest{Hash: docHash(fmt.Sprint("native ", try))}, resp); err != nil {
				t.Error(err)
				return
			}
			var err error
			if native, err = ksi.ParseSignature(resp.Signature); err != nil {
				t.Error(err)
			}
		})
		wg.Wait()
		if t.Failed() {
			return
		}
		k, err := tok.KSI()
		if err != nil {
			t.Fatal(err)
		}
		if k.SigningTime() != native.SigningTime() {
			continue // different seconds: ask again
		}
		if !k.CalendarChain.InputHash.Equal(native.CalendarChain.InputHash) {
			t.Fatalf("second %d: the token's calendar leaf %s, the native signature's %s", k.SigningTime(), k.CalendarChain.InputHash, native.CalendarChain.InputHash)
		}
		return
	}
	t.Fatal("the token and the native signature never landed in the same second in 5 tries")
}

// A node out of memory for waiting requests refuses a time-stamp request
// at once (HTTP 429 with a rejection), before any key operation; once the
// memory is free again, it answers.
func TestTSARefusedWhenOverloaded(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir()})
	b := s.n.agg.Budget()
	var held int64
	for b.Admits(aggregator.CostCaller) {
		if !b.Reserve(aggregator.CostCaller) {
			break
		}
		held += aggregator.CostCaller
	}
	d := sha256.Sum256([]byte("TestTSARefusedWhenOverloaded"))
	resp, body := postTSA(t, s.addr, tsaQuery(t, d[:]), "application/timestamp-query")
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("overloaded: %s, want 429", resp.Status)
	}
	if _, err := tsp.ParseResponse(body); err == nil || !strings.Contains(err.Error(), "overloaded") {
		t.Fatalf("overloaded: %v, want a rejection saying so", err)
	}
	if n := keyOps(t, s); n != 0 {
		t.Fatalf("%d key operations for a refused request", n)
	}
	b.Release(held)
	if resp, _ := postTSA(t, s.addr, tsaQuery(t, d[:]), "application/timestamp-query"); resp.StatusCode != 200 {
		t.Fatalf("after the overload: %s", resp.Status)
	}
}

// keyOps is how many TSA key operations the node has counted.
func keyOps(t *testing.T, s *started) uint64 {
	t.Helper()
	mfs, err := s.n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "tempel_tsa_key_seconds" {
			return mf.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	t.Fatal("no tempel_tsa_key_seconds metric")
	return 0
}
