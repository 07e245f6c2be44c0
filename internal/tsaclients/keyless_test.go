package tsaclients

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
	"github.com/tempel-ksi/tempel/verifier"
)

// publicationWait bounds the wait for a publication at or after a
// token's second: one is due within a period, then it must be served.
const publicationWait = 4*publishEvery + 10*time.Second

// publisherConstraint names the development publications file signer.
const publisherConstraint = "E=publications@tempel.test"

// checkToken checks what every token from the front door must be, however
// a client got it: its TSA signature chains to the server's root, and its
// KSI signature is of this very token (its record reassembles the token's
// signed content, its aggregation time is the genTime) and verifies with
// the message imprint as the document hash. der is a response or a bare
// token. It returns the parsed token.
func checkToken(t *testing.T, s *server, der []byte) *tsp.Token {
	t.Helper()
	tok, err := tsp.Parse(der)
	if err != nil {
		t.Fatalf("the client's token: %v", err)
	}
	if err := tok.VerifyTSA(s.roots(t), nil, time.Time{}); err != nil {
		t.Fatalf("the client's token, TSA layer: %v", err)
	}
	ksig, err := tok.KSI()
	if err != nil {
		t.Fatalf("the client's token, KSI layer: %v", err)
	}
	imp, err := tok.Imprint()
	if err != nil {
		t.Fatal(err)
	}
	rep := verifier.Verify(context.Background(), ksig, verifier.Internal, verifier.Options{Document: imp})
	if err := rep.Err(); err != nil {
		t.Fatalf("the token's KSI signature with its message imprint: %v", err)
	}
	return tok
}

// keyless extends the token's KSI signature with the Go SDK to the
// server's newest publication once one covers the token's second, checks
// it publication-based against the server's publications file (verified
// against the development root) with the message imprint, and puts it
// back into the token: the TSA signature of the result still verifies.
// It returns the extended token (a bare token, or a response if tok was
// read from one).
func keyless(t *testing.T, s *server, tok *tsp.Token) []byte {
	t.Helper()
	ksig, err := tok.KSI()
	if err != nil {
		t.Fatal(err)
	}
	imp, err := tok.Imprint()
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	pf := s.publishedAfter(t, ksig.SigningTime())
	rec := pf.Latest()
	cl, err := client.New(client.Config{Endpoints: []string{s.addr}, Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var ext *ksi.Signature
	for {
		ext, err = cl.Extend(ctx, ksig, rec)
		if err == nil {
			break
		}
		// The extender may not hold the published second yet.
		if !errors.Is(err, client.ErrOutOfRange) && !errors.Is(err, client.ErrUnavailable) || ctx.Err() != nil {
			t.Fatalf("extend the token's KSI signature to %s: %v", rec.Data, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	rep := verifier.Verify(ctx, ext, verifier.PublicationsFileBased, verifier.Options{Document: imp, PublicationsFile: pf})
	if err := rep.Err(); err != nil {
		t.Fatalf("the extended KSI signature, publication-based: %v", err)
	}
	if pr := ext.PublicationRecord; pr == nil || pr.Data.Time != rec.Data.Time {
		t.Fatalf("the extended signature does not carry publication %s", rec.Data)
	}
	b, err := ext.Encode()
	if err != nil {
		t.Fatal(err)
	}
	with := tok.WithKSI
	if tok.IsResponse() {
		with = tok.WithKSIResponse
	}
	out, err := with(b)
	if err != nil {
		t.Fatalf("put the extended signature into the token: %v", err)
	}
	back, err := tsp.Parse(out)
	if err != nil {
		t.Fatal(err)
	}
	if err := back.VerifyTSA(s.roots(t), nil, time.Time{}); err != nil {
		t.Fatalf("the extended token's TSA signature: %v", err)
	}
	if !bytes.Equal(back.KSISignature, b) {
		t.Fatal("the extended token does not carry the extended signature")
	}
	// The publication alone, as a reader with only a printed publication
	// string would check it.
	k2, err := back.KSI()
	if err != nil {
		t.Fatal(err)
	}
	rep = verifier.Verify(ctx, k2, verifier.UserPublicationBased, verifier.Options{Document: imp, UserPublication: &rec.Data})
	if err := rep.Err(); err != nil {
		t.Fatalf("the extended token with the publication alone: %v", err)
	}
	// And as a citizen would: tempel verify with the publication string
	// only, against the document's hash (the token's message imprint).
	dir := t.TempDir()
	path := filepath.Join(dir, "extended.tst")
	write(t, path, out)
	got := run(t, dir, tempelBin, "verify", "--pub-str", rec.Data.String(), "--hash", imp.String(), "--sig", path)
	if !bytes.HasPrefix(got, []byte("OK")) {
		t.Fatalf("tempel verify --pub-str of the extended token:\n%s", got)
	}
	t.Logf("token of second %d extended to publication %s and verified keylessly (%v after asking)", ksig.SigningTime(), rec.Data, time.Since(start).Round(time.Millisecond))
	return out
}

// publishedAfter waits until the server's publications file, verified
// against the development root, has a publication at or after second sec.
func (s *server) publishedAfter(t *testing.T, sec uint64) *ksi.PublicationsFile {
	t.Helper()
	cn, err := verifier.ParseConstraint(publisherConstraint)
	if err != nil {
		t.Fatal(err)
	}
	trust := verifier.Trust{Roots: s.roots(t), Constraints: []verifier.Constraint{cn}}
	deadline := time.Now().Add(publicationWait)
	for {
		pf, err := s.publications()
		if err == nil {
			if latest := pf.Latest(); latest != nil && latest.Data.Time >= sec {
				trust.Time = time.Now()
				if err := verifier.VerifyPublicationsFile(pf, trust); err != nil {
					t.Fatalf("the server's publications file: %v", err)
				}
				return pf
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no publication at or after second %d within %v (last: %v)\n%s", sec, publicationWait, err, s.logTail())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *server) publications() (*ksi.PublicationsFile, error) {
	resp, err := http.Get(s.url("/publications.bin"))
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /publications.bin: %s", resp.Status)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	return ksi.ParsePublicationsFile(b)
}
