package client_test

import (
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// publicationsSigner is the constraint a node's development PKI meets.
const publicationsSigner = "E=publications@tempel.test"

// trustedServer starts a development node and returns the trust that
// accepts its publications file: its development root and signer.
func trustedServer(t *testing.T) (addr string, stop func(), trust client.PublicationsTrust) {
	t.Helper()
	dir := t.TempDir()
	addr, stopNode, err := serve(dir, "")
	if err != nil {
		t.Fatal(err)
	}
	var once sync.Once
	stop = func() {
		once.Do(func() {
			if err := stopNode(); err != nil {
				t.Errorf("node: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	certs, err := verifier.LoadCertificates(filepath.Join(dir, "data", "keys", "root.pem"))
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	for _, c := range certs {
		roots.AddCert(c)
	}
	cs, err := verifier.ParseConstraint(publicationsSigner)
	if err != nil {
		t.Fatal(err)
	}
	return addr, stop, client.PublicationsTrust{Roots: roots, Constraints: []verifier.Constraint{cs}}
}

const publicationsFetched = `tempel_requests_total{interface="grpc",method="GetPublicationsFile",status="OK"}`

// Concurrent callers of a fresh client share one fetch, and later callers
// the cached file.
func TestPublicationsSharedFetch(t *testing.T) {
	t.Parallel()
	addr, _, trust := trustedServer(t)
	c := newClient(t, client.Config{Endpoints: []string{addr}, PublicationsTrust: trust})
	const n = 20
	files := make([]*ksi.PublicationsFile, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { files[i], errs[i] = c.Publications(context.Background()) })
	}
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("caller %d: %v", i, errs[i])
		}
		if files[i] != files[0] {
			t.Fatalf("caller %d got another file than caller 0", i)
		}
	}
	if _, err := c.Publications(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := metric(t, addr, "", "", publicationsFetched); got != 1 {
		t.Fatalf("the server sent the file %v times, want 1", got)
	}
}

// The file is fetched again after Refresh; while refreshes fail, the last
// good file is served until it is MaxAge old.
func TestPublicationsRefreshAndMaxAge(t *testing.T) {
	t.Parallel()
	addr, stop, trust := trustedServer(t)
	trust.Refresh, trust.MaxAge = time.Hour, 3*time.Hour
	c := newClient(t, client.Config{Endpoints: []string{addr}, PublicationsTrust: trust, Retries: -1})
	var mu sync.Mutex
	now := time.Now()
	client.SetPublicationsClock(c, func() time.Time { mu.Lock(); defer mu.Unlock(); return now })
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	ctx := context.Background()

	first, err := c.Publications(ctx)
	if err != nil {
		t.Fatal(err)
	}
	advance(59 * time.Minute)
	if f, err := c.Publications(ctx); err != nil || f != first {
		t.Fatalf("within Refresh: %v, %v; want the cached file", f, err)
	}
	if got := metric(t, addr, "", "", publicationsFetched); got != 1 {
		t.Fatalf("fetched %v times within Refresh, want 1", got)
	}
	advance(2 * time.Minute)
	second, err := c.Publications(ctx)
	if err != nil || second == first {
		t.Fatalf("after Refresh: %v; want a new fetch", err)
	}
	if got := metric(t, addr, "", "", publicationsFetched); got != 2 {
		t.Fatalf("fetched %v times after Refresh, want 2", got)
	}

	stop()
	advance(61 * time.Minute)
	if f, err := c.Publications(ctx); err != nil || f != second {
		t.Fatalf("refresh failed within MaxAge: %v; want the last good file", err)
	}
	advance(2 * time.Hour) // the last good file is 3 h 1 min old
	_, err = c.Publications(ctx)
	if !errors.Is(err, client.ErrUnavailable) || !strings.Contains(err.Error(), "old") {
		t.Fatalf("past MaxAge with the server down: %v, want ErrUnavailable naming the age", err)
	}
	t.Log(err)
}

// A file the trust does not accept is never returned; without trust,
// Publications refuses before fetching.
func TestPublicationsUntrusted(t *testing.T) {
	t.Parallel()
	addr, _, trust := trustedServer(t)
	other, err := verifier.ParseConstraint("E=someone@else.test")
	if err != nil {
		t.Fatal(err)
	}
	trust.Constraints = []verifier.Constraint{other}
	c := newClient(t, client.Config{Endpoints: []string{addr}, PublicationsTrust: trust})
	if _, err := c.Publications(context.Background()); !errors.Is(err, verifier.ErrUntrustedPublicationsFile) {
		t.Fatalf("wrong signer constraint: %v, want ErrUntrustedPublicationsFile", err)
	}
	none := newClient(t, client.Config{Endpoints: []string{addr}})
	if _, err := none.Publications(context.Background()); !errors.Is(err, client.ErrNoPublicationsTrust) {
		t.Fatalf("no trust: %v, want ErrNoPublicationsTrust", err)
	}
}
