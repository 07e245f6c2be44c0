package client_test

import (
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// The test stack is real: a calendar.Service on a Pebble store, an
// aggregator.Engine whose upstream is that calendar, and a gRPC server on
// loopback whose handlers delegate to them. Each sign waits for the
// calendar's second to close (up to about a second), so the tests keep
// their sign round trips few and run in parallel.

const (
	testLogin     = "gw"
	testKey       = "secret"
	testMachineID = "m-1"
	testPubFile   = "KSIPUBLF test publications file"
)

var testKey2048 = sync.OnceValue(func() *rsa.PrivateKey {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(err)
	}
	return k
})

// rsaSigner signs calendar roots as the reference SDKs expect.
type rsaSigner struct{ key *rsa.PrivateKey }

func (s rsaSigner) SignCalendarRoot(pd []byte) (ksi.SignatureData, error) {
	d := sha256.Sum256(pd)
	v, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, d[:])
	if err != nil {
		return ksi.SignatureData{}, err
	}
	return ksi.SignatureData{Type: "1.2.840.113549.1.1.11", Value: v, CertificateID: []byte{1, 2, 3, 4}}, nil
}

// calendarUpstream lets the aggregator sign its round roots at the calendar.
type calendarUpstream struct{ cal *calendar.Service }

func (u calendarUpstream) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	return u.cal.Sign(ctx, root, level, "aggregator")
}

// statusOf maps service errors to gRPC statuses.
func statusOf(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return status.FromContextError(err).Err()
	case errors.Is(err, aggregator.ErrBadRequest), errors.Is(err, aggregator.ErrLevelTooHigh), errors.Is(err, calendar.ErrBadRange):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, aggregator.ErrOverloaded), errors.Is(err, aggregator.ErrOverQuota):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, calendar.ErrTimeTooNew), errors.Is(err, calendar.ErrTimeTooOld):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, aggregator.ErrUpstream), errors.Is(err, aggregator.ErrUpstreamTime), errors.Is(err, aggregator.ErrStopped), errors.Is(err, calendar.ErrEmpty):
		return status.Error(codes.Unavailable, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
}

// identity is the caller as the test server's interceptor let it in.
func identity(ctx context.Context) aggregator.Identity {
	md, _ := metadata.FromIncomingContext(ctx)
	id := aggregator.Identity{ClientID: "anonymous"}
	if v := md.Get("authorization"); len(v) == 1 {
		b, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(v[0], "Basic "))
		id.ClientID, _, _ = strings.Cut(string(b), ":")
	}
	if v := md.Get("x-tempel-machine-id"); len(v) == 1 {
		id.MachineID = v[0]
	}
	return id
}

// authenticate accepts anonymous callers and the one test user; a wrong
// key is refused.
func authenticate(ctx context.Context) error {
	md, _ := metadata.FromIncomingContext(ctx)
	v := md.Get("authorization")
	if len(v) == 0 {
		return nil
	}
	if v[0] != "Basic "+base64.StdEncoding.EncodeToString([]byte(testLogin+":"+testKey)) {
		return status.Error(codes.Unauthenticated, "unknown login or wrong key")
	}
	return nil
}

type signerServer struct {
	tempelv1.UnimplementedSignerServer
	eng *aggregator.Engine
}

func (s *signerServer) Sign(ctx context.Context, req *tempelv1.SignRequest) (*tempelv1.SignResponse, error) {
	if req.Level > 0xFF {
		return nil, status.Error(codes.InvalidArgument, "level above 255")
	}
	r := s.eng.Sign(ctx, aggregator.Request{Hash: req.Hash, Level: byte(req.Level), Identity: identity(ctx)})
	if r.Err != nil {
		return nil, statusOf(r.Err)
	}
	return &tempelv1.SignResponse{RequestId: req.RequestId, Signature: r.Signature, AggregationTime: r.AggregationTime}, nil
}

func (s *signerServer) SignStream(st tempelv1.Signer_SignStreamServer) error {
	id := identity(st.Context())
	out := make(chan *tempelv1.SignResponse, 16384)
	sent := make(chan error, 1)
	go func() {
		var err error
		for r := range out {
			if err == nil {
				err = st.Send(r)
			}
		}
		sent <- err
	}()
	var wg sync.WaitGroup
	answer := func(reqID uint64, r aggregator.Result) {
		resp := &tempelv1.SignResponse{RequestId: reqID, Signature: r.Signature, AggregationTime: r.AggregationTime}
		if r.Err != nil {
			resp.Signature, resp.Status, resp.ErrorMessage = nil, uint32(aggregator.Status(r.Err)), r.Err.Error()
		}
		out <- resp
		wg.Done()
	}
	var rerr error
	for {
		req, err := st.Recv()
		if err != nil {
			if err != io.EOF {
				rerr = err
			}
			break
		}
		wg.Add(1)
		reqID := req.RequestId
		if req.Level > 0xFF {
			answer(reqID, aggregator.Result{Err: aggregator.ErrLevelTooHigh})
			continue
		}
		err = s.eng.Submit(aggregator.Request{Hash: req.Hash, Level: byte(req.Level), Identity: id},
			func(r aggregator.Result) { answer(reqID, r) })
		if err != nil {
			answer(reqID, aggregator.Result{Err: err})
		}
	}
	wg.Wait()
	close(out)
	if err := <-sent; err != nil {
		return err
	}
	return rerr
}

type extenderServer struct {
	tempelv1.UnimplementedExtenderServer
	cal *calendar.Service
}

func (s *extenderServer) Extend(ctx context.Context, req *tempelv1.ExtendRequest) (*tempelv1.ExtendResponse, error) {
	if req.PublicationTime != 0 && req.PublicationTime < req.AggregationTime {
		return nil, status.Error(codes.InvalidArgument, "publication time precedes aggregation time")
	}
	ch, last, err := s.cal.Extend(req.AggregationTime, req.PublicationTime)
	if err != nil {
		return nil, statusOf(err)
	}
	return &tempelv1.ExtendResponse{CalendarChain: ch.Raw, CalendarLastTime: last}, nil
}

func (s *extenderServer) GetCalendarHead(ctx context.Context, _ *tempelv1.GetCalendarHeadRequest) (*tempelv1.CalendarHead, error) {
	first, last, ok := s.cal.Store().Head()
	if !ok {
		return nil, statusOf(calendar.ErrEmpty)
	}
	root, err := s.cal.Store().Root(last)
	if err != nil {
		return nil, statusOf(err)
	}
	return &tempelv1.CalendarHead{FirstTime: first, LastTime: last, Root: root}, nil
}

type publicationsServer struct {
	tempelv1.UnimplementedPublicationsServer
}

func (publicationsServer) GetPublicationsFile(context.Context, *tempelv1.GetPublicationsFileRequest) (*tempelv1.PublicationsFile, error) {
	return &tempelv1.PublicationsFile{Content: []byte(testPubFile), Etag: "1"}, nil
}

// startServer runs a calendar, an aggregator and a gRPC server on
// loopback for the test and returns the server's address.
func startServer(t *testing.T) string {
	t.Helper()
	addr, stop, err := serve(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return addr
}

// serve starts the test stack with its calendar in dir.
func serve(dir string) (addr string, stop func(), err error) {
	log := slog.New(slog.DiscardHandler)
	store, err := calendar.OpenStore(dir, calendar.StoreOptions{Logger: log})
	if err != nil {
		return "", nil, err
	}
	cal, err := calendar.NewService(calendar.ServiceConfig{Store: store, Signer: rsaSigner{testKey2048()}, Logger: log})
	if err != nil {
		store.Close()
		return "", nil, err
	}
	eng, err := aggregator.New(aggregator.Config{Upstream: calendarUpstream{cal}, Period: 20 * time.Millisecond, Logger: log})
	if err != nil {
		store.Close()
		return "", nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		store.Close()
		return "", nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); cal.Run(ctx) }()
	go func() { defer wg.Done(); eng.Run(ctx) }()

	srv := grpc.NewServer(
		grpc.UnaryInterceptor(func(ctx context.Context, req any, _ *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
			if err := authenticate(ctx); err != nil {
				return nil, err
			}
			return h(ctx, req)
		}),
		grpc.StreamInterceptor(func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
			if err := authenticate(ss.Context()); err != nil {
				return err
			}
			return h(srv, ss)
		}),
	)
	tempelv1.RegisterSignerServer(srv, &signerServer{eng: eng})
	tempelv1.RegisterExtenderServer(srv, &extenderServer{cal: cal})
	tempelv1.RegisterPublicationsServer(srv, publicationsServer{})
	go srv.Serve(ln)
	stop = func() {
		srv.Stop()
		cancel()
		wg.Wait()
		store.Close()
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
	addr := startServer(t)
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

func TestSignMany(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
	c := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: testKey})
	for _, n := range []int{1, 2, 37} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			t.Parallel()
			hashes := make([]ksi.Imprint, n)
			for i := range hashes {
				hashes[i] = docHash(fmt.Sprintf("TestSignMany %d/%d", i, n))
			}
			sigs, err := c.SignMany(context.Background(), hashes)
			if err != nil {
				t.Fatal(err)
			}
			if len(sigs) != n {
				t.Fatalf("%d signatures for %d hashes", len(sigs), n)
			}
			for i, sig := range sigs {
				verifyInternal(t, sig, hashes[i])
				if sig.SigningTime() != sigs[0].SigningTime() {
					t.Fatalf("signature %d at %d, signature 0 at %d", i, sig.SigningTime(), sigs[0].SigningTime())
				}
				if n > 1 {
					// Another hash must not verify with this signature.
					other := hashes[(i+1)%n]
					if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: other}); rep.Result == verifier.OK {
						t.Fatalf("signature %d verifies against hash %d", i, (i+1)%n)
					}
				}
				if got := sig.Identity(); len(got) == 0 || got[len(got)-1] != testLogin {
					t.Fatalf("identity %v, want the gateway's %q last", got, testLogin)
				}
			}
		})
	}
	t.Run("refused", func(t *testing.T) {
		t.Parallel()
		sha512 := append(ksi.Imprint{byte(ksi.SHA2_512)}, make([]byte, 64)...)
		if _, err := c.SignMany(context.Background(), []ksi.Imprint{docHash("a"), sha512}); !errors.Is(err, client.ErrInvalid) {
			t.Fatalf("SHA-512 hash: %v, want ErrInvalid", err)
		}
		if sigs, err := c.SignMany(context.Background(), nil); err != nil || sigs != nil {
			t.Fatalf("no hashes: %v, %v", sigs, err)
		}
	})
}

func TestStream(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
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
		c := newClient(t, client.Config{Endpoints: []string{addr}, MaxOutstanding: bound})
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
		c := newClient(t, client.Config{Endpoints: []string{addr}})
		s, err := c.Stream(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		// A well-formed imprint the aggregator refuses: SHA-1.
		sha1 := append(ksi.Imprint{byte(ksi.SHA1)}, make([]byte, 20)...)
		if _, err := s.Sign(sha1); !errors.Is(err, client.ErrInvalid) || !strings.Contains(err.Error(), "SHA-256") {
			t.Fatalf("SHA-1 on the stream: %v, want ErrInvalid with the server's reason", err)
		}
	})
}

func TestFailover(t *testing.T) {
	t.Parallel()
	addr := startServer(t)
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
	addr := startServer(t)
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
	addr := startServer(t)
	c := newClient(t, client.Config{Endpoints: []string{addr}, Login: testLogin, Key: "wrong key"})
	ctx := context.Background()
	_, err := c.CalendarHead(ctx)
	if !errors.Is(err, client.ErrUnauthenticated) || !strings.Contains(err.Error(), "unknown login or wrong key") {
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
	addr := startServer(t)
	c := newClient(t, client.Config{Endpoints: []string{addr}})
	b, err := c.PublicationsFile(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != testPubFile {
		t.Fatalf("publications file %q", b)
	}
}

func TestConfigRedactsKey(t *testing.T) {
	cfg := client.Config{Endpoints: []string{"x:1"}, Login: "gw", Key: "s3cr3t-key"}
	var logged strings.Builder
	slog.New(slog.NewTextHandler(&logged, nil)).Info("config", "cfg", cfg)
	for _, s := range []string{fmt.Sprint(cfg), fmt.Sprintf("%+v", cfg), logged.String()} {
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
