package client_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// The test stack is the real server: an internal/node node in role all
// (calendar and aggregator in one process) serving gRPC on loopback. Each
// sign waits for the calendar's second to close (up to about a second),
// so the tests keep their sign round trips few and run in parallel.

const (
	testLogin     = "gw"
	testKey       = "secret"
	testMachineID = "m-1"
	// testUsers is the users file of a node that knows the test gateway.
	testUsers = testLogin + ":" + testKey + "\n"
)

// startServer runs a node for the test and returns its address. users is
// the node's users file; with "" the node runs in development mode and
// takes every call, as anonymous unless its credentials are valid.
func startServer(t *testing.T, users string) string {
	t.Helper()
	addr, stop, err := serve(t.TempDir(), users)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("node: %v", err)
		}
	})
	return addr
}

// serve starts a node with its state in dir. It names itself "aggregator"
// to the calendar, so signatures identify as [aggregator login].
func serve(dir, users string) (addr string, stop func() error, err error) {
	cfg := node.Config{Role: node.RoleAll, DataDir: filepath.Join(dir, "data"), Name: "aggregator",
		RoundPeriod: 20 * time.Millisecond, PublishEvery: time.Hour, Logger: slog.New(slog.DiscardHandler)}
	if users != "" {
		cfg.UsersFile = filepath.Join(dir, "users")
		if err := os.WriteFile(cfg.UsersFile, []byte(users), 0o600); err != nil {
			return "", nil, err
		}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	cfg.PublicURL = "http://" + ln.Addr().String()
	n, err := node.New(cfg)
	if err != nil {
		ln.Close()
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, ln) }()
	stop = func() error {
		cancel()
		return errors.Join(<-done, n.Close())
	}
	return ln.Addr().String(), stop, nil
}

// closedPort returns a loopback address nobody listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func newClient(t *testing.T, cfg client.Config) *client.Client {
	t.Helper()
	c, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func docHash(seed string) ksi.Imprint {
	d := sha256.Sum256([]byte(seed))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, d[:]...)
}

func verifyInternal(t *testing.T, sig *ksi.Signature, doc ksi.Imprint) {
	t.Helper()
	rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: doc})
	if rep.Result != verifier.OK {
		t.Fatalf("internal verification: %s %s: %s", rep.Code, rep.Rule, rep.Message)
	}
}

func TestSign(t *testing.T) {
	t.Parallel()
	addr := startServer(t, testUsers)
	c := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: testKey, MachineID: testMachineID})
	doc := docHash("TestSign")
	sig, err := c.Sign(context.Background(), doc)
	if err != nil {
		t.Fatal(err)
	}
	verifyInternal(t, sig, doc)
	if !sig.DocumentHash().Equal(doc) {
		t.Fatalf("document hash %s, want %s", sig.DocumentHash(), doc)
	}
	// The credentials and machine id reached the server: the gateway's
	// metadata link names them.
	md := sig.Metadata()
	if len(md) == 0 || md[0].ClientID != testLogin || md[0].MachineID != testMachineID {
		t.Fatalf("lowest metadata %+v, want client %q machine %q", md, testLogin, testMachineID)
	}
	if ok := time.Since(sig.SigningUTC()); ok < 0 || ok > time.Minute {
		t.Fatalf("signing time %s is not now", sig.SigningUTC())
	}

	// Refused before sending.
	if _, err := c.Sign(context.Background(), ksi.Imprint{0x01, 0x02}); !errors.Is(err, client.ErrInvalid) {
		t.Fatalf("malformed imprint: %v, want ErrInvalid", err)
	}
}

func TestStream(t *testing.T) {
	t.Parallel()
	addr := startServer(t, testUsers)
	dev := startServer(t, "") // for the anonymous streams
	t.Run("concurrent", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: testKey})
		s, err := c.Stream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		const n = 200
		sigs := make([]*ksi.Signature, n)
		errs := make([]error, n)
		var wg sync.WaitGroup
		for i := range n {
			wg.Go(func() { sigs[i], errs[i] = s.Sign(docHash(fmt.Sprint("TestStream ", i))) })
		}
		wg.Wait()
		for i := range n {
			if errs[i] != nil {
				t.Fatalf("sign %d: %v", i, errs[i])
			}
			verifyInternal(t, sigs[i], docHash(fmt.Sprint("TestStream ", i)))
		}
		if err := s.Close(); err != nil {
			t.Fatalf("close: %v", err)
		}
		if _, err := s.Sign(docHash("after close")); !errors.Is(err, client.ErrClosed) {
			t.Fatalf("sign after close: %v, want ErrClosed", err)
		}
	})
	t.Run("submit bound", func(t *testing.T) {
		t.Parallel()
		// One more request than the bound: the last Submit must wait for
		// an answer to the first ones (a calendar second), so this costs
		// two seconds, not n.
		const bound, n = 8, 12
		c := newClient(t, client.Config{Endpoints: []string{dev}, MaxOutstanding: bound})
		s, err := c.Stream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		var answered, failed atomic.Int64
		var wg sync.WaitGroup
		wg.Add(n)
		for i := range n {
			err := s.Submit(docHash(fmt.Sprint("submit ", i)), func(sig []byte, err error) {
				defer wg.Done()
				if err == nil {
					_, err = ksi.ParseSignature(sig)
				}
				if err != nil {
					t.Errorf("submit: %v", err)
					failed.Add(1)
				}
				answered.Add(1)
			})
			if err != nil {
				t.Fatal(err)
			}
			if o := s.Outstanding(); o > bound {
				t.Fatalf("%d outstanding, bound %d", o, bound)
			}
			if i == bound && answered.Load() == 0 {
				t.Fatalf("submit %d returned with %d outstanding and none answered", i, s.Outstanding())
			}
		}
		wg.Wait()
		if answered.Load() != n || failed.Load() != 0 {
			t.Fatalf("answered %d, failed %d of %d", answered.Load(), failed.Load(), n)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("bad request", func(t *testing.T) {
		t.Parallel()
		c := newClient(t, client.Config{Endpoints: []string{dev}})
		s, err := c.Stream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// A well-formed imprint the aggregator refuses: SHA-1.
		sha1 := append(ksi.Imprint{byte(ksi.SHA1)}, make([]byte, 20)...)
		if _, err := s.Sign(sha1); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "SHA-1 is deprecated") {
			t.Fatalf("SHA-1 on the stream: %v, want ErrInvalid with the server's reason", err)
		}
	})
}

func TestFailover(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{closedPort(t), addr}})
	doc := docHash("TestFailover")
	sig, err := c.Sign(context.Background(), doc)
	if err != nil {
		t.Fatal(err)
	}
	verifyInternal(t, sig, doc)
	if _, err := c.CalendarHead(context.Background()); err != nil {
		t.Fatal(err)
	}

	down := newClient(t, client.Config{Endpoints: []string{closedPort(t), closedPort(t)}})
	if _, err := down.CalendarHead(context.Background()); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("every endpoint down: %v, want ErrUnavailable", err)
	}
	if _, err := down.Stream(context.Background()); !errors.Is(err, client.ErrUnavailable) {
		t.Fatalf("stream with every endpoint down: %v, want ErrUnavailable", err)
	}
}

func TestExtend(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	ctx := context.Background()
	doc := docHash("TestExtend")
	sig, err := c.Sign(ctx, doc)
	if err != nil {
		t.Fatal(err)
	}
	// Wait for a second after the signature's: the publication.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var head *client.CalendarHead
	for {
		if head, err = c.CalendarHead(wctx); err != nil {
			t.Fatal(err)
		}
		if head.Last > sig.SigningTime() {
			break
		}
		select {
		case <-wctx.Done():
			t.Fatalf("calendar stays at %d, signature at %d", head.Last, sig.SigningTime())
		case <-time.After(20 * time.Millisecond):
		}
	}
	rec, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(head.Last, head.Root), nil, nil)
	if err != nil {
		t.Fatal(err)
	}

	ext, err := c.Extend(ctx, sig, rec)
	if err != nil {
		t.Fatal(err)
	}
	if !ext.IsExtended() || ext.CalendarAuthRecord != nil {
		t.Fatal("extended signature has no publication record, or keeps its authentication record")
	}
	rep := verifier.Verify(ctx, ext, verifier.UserPublicationBased, verifier.Options{Document: doc, UserPublication: &rec.Data})
	if rep.Result != verifier.OK {
		t.Fatalf("user publication verification: %s %s: %s", rep.Code, rep.Rule, rep.Message)
	}
	// Extending an extended signature again works from its new chain.
	if _, err := c.Extend(ctx, ext, rec); err != nil {
		t.Fatalf("extend again: %v", err)
	}

	t.Run("wrong publication", func(t *testing.T) {
		bad, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(head.Last, docHash("not the root")), nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.Extend(ctx, sig, bad)
		var mm *client.ChainMismatchError
		if !errors.As(err, &mm) || mm.Check != "output hash" || !errors.Is(err, client.ErrBadResponse) {
			t.Fatalf("wrong published hash: %v, want an output hash mismatch", err)
		}
		t.Log(err)
	})
	t.Run("publication not reached", func(t *testing.T) {
		_, err := c.ExtendTo(ctx, sig, head.Last+3600)
		if !errors.Is(err, client.ErrOutOfRange) {
			t.Fatalf("publication an hour ahead: %v, want ErrOutOfRange", err)
		}
	})
	t.Run("calendar policy", func(t *testing.T) {
		rep := verifier.Verify(ctx, sig, verifier.CalendarBased, verifier.Options{Document: doc, Extender: client.CalendarExtender{Client: c}, ExtendingAllowed: true})
		if rep.Result != verifier.OK {
			t.Fatalf("calendar verification: %s %s: %s", rep.Code, rep.Rule, rep.Message)
		}
	})
	t.Run("newest root", func(t *testing.T) {
		ch, err := c.ExtendTo(ctx, sig, 0)
		if err != nil {
			t.Fatal(err)
		}
		if ch.PublicationTime < head.Last {
			t.Fatalf("chain to %d, head was at %d", ch.PublicationTime, head.Last)
		}
	})
}

func TestUnauthenticated(t *testing.T) {
	t.Parallel()
	addr := startServer(t, testUsers)
	c := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: "wrong key"})
	ctx := context.Background()
	_, err := c.CalendarHead(ctx)
	if !errors.Is(err, client.ErrUnauthenticated) || !strings.Contains(err.Error(), "authentication failed") {
		t.Fatalf("calendar head with a wrong key: %v, want ErrUnauthenticated with the server's message", err)
	}
	t.Log(err)
	if strings.Contains(err.Error(), base64.StdEncoding.EncodeToString([]byte(testLogin+":wrong key"))) {
		t.Fatalf("error reveals the key: %v", err)
	}
	if _, err := c.Sign(ctx, docHash("x")); !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("sign with a wrong key: %v, want ErrUnauthenticated", err)
	}
	s, err := c.Stream(ctx)
	if err == nil {
		_, err = s.Sign(docHash("x"))
		s.Close()
	}
	if !errors.Is(err, client.ErrUnauthenticated) {
		t.Fatalf("stream with a wrong key: %v, want ErrUnauthenticated", err)
	}
}

func TestPublicationsFile(t *testing.T) {
	t.Parallel()
	addr := startServer(t, "")
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	b, err := c.PublicationsFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The same file the node serves over HTTP, and a publications file.
	resp, err := http.Get("http://" + addr + "/publications.bin")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	want, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("publications.bin over HTTP: %s, %v", resp.Status, err)
	}
	if !bytes.Equal(b, want) {
		t.Fatalf("publications file of %d bytes, the node serves %d", len(b), len(want))
	}
	if _, err := ksi.ParsePublicationsFile(b); err != nil {
		t.Fatalf("publications file: %v", err)
	}
}

func TestConfigRedactsKey(t *testing.T) {
	cfg := client.Config{Endpoints: []string{"x:1"}, Login: "gw", Key: "s3cr3t-key"}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), fmt.Sprintf("%#v", cfg), fmt.Sprintf("%v", &cfg), logged.String()} {
		if strings.Contains(s, "s3cr3t") {
			t.Fatalf("key in %q", s)
		}
	}
}

func TestClosed(t *testing.T) {
	c, err := client.New(client.Config{Endpoints: []string{closedPort(t)}})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := c.Sign(context.Background(), docHash("x")); !errors.Is(err, client.ErrClosed) {
		t.Fatalf("sign after close: %v, want ErrClosed", err)
	}
	if _, err := client.New(client.Config{}); err == nil {
		t.Fatal("no endpoints accepted")
	}
}

// A round that fails upstream fails every stream request whose leg had
// already arrived, with ErrUnavailable: the failure comes with the round.
func TestStreamRoundFailsUpstream(t *testing.T) {
	cfg := node.Config{Role: node.RoleAggregator, Upstream: closedPort(t), Name: "gateway",
		RoundPeriod: 20 * time.Millisecond, Logger: slog.New(slog.DiscardHandler)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.PublicURL = "http://" + ln.Addr().String()
	n, err := node.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, ln) }()
	defer func() { cancel(); <-done; n.Close() }()

	c, err := client.New(client.Config{Endpoints: []string{ln.Addr().String()}, Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := c.Stream(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Go(func() { _, errs[i] = s.Sign(docHash(fmt.Sprint("down ", i))) })
	}
	wg.Wait()
	for i, err := range errs {
		if !errors.Is(err, client.ErrUnavailable) {
			t.Fatalf("request %d: %v, want ErrUnavailable", i, err)
		}
	}
}
