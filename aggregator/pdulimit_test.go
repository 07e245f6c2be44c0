package aggregator

import (
	"bytes"
	"context"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/verifier"
)

// rsaRootSigner signs calendar roots as the calendar's key set does:
// RSA PKCS#1 v1.5 with SHA-256 over the published-data bytes.
type rsaRootSigner struct{ key *rsa.PrivateKey }

func (s rsaRootSigner) SignCalendarRoot(pd []byte) (ksi.SignatureData, error) {
	d := sha256.Sum256(pd)
	v, err := rsa.SignPKCS1v15(rand.Reader, s.key, crypto.SHA256, d[:])
	return ksi.SignatureData{Type: verifier.SignatureAlgorithmOID, Value: v, CertificateID: []byte{1, 2, 3, 4}}, err
}

// calendarUpstream is a real calendar in process as the engine's
// upstream, wired as `tempel serve --role all` does: each round reserves
// its place in the calendar's second. It counts the roots submitted.
type calendarUpstream struct {
	cal   *calendar.Service
	roots atomic.Int64
}

func (c *calendarUpstream) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	c.roots.Add(1)
	return c.cal.Sign(ctx, root, level, "tempel")
}

func (c *calendarUpstream) Reserve() (Upstream, func()) {
	slot := c.cal.Reserve()
	return UpstreamFunc(func(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
		c.roots.Add(1)
		return slot.Sign(ctx, root, level, "tempel")
	}), slot.Release
}

// startCalendar runs a calendar on a fresh store with the wall clock
// until the test ends.
func startCalendar(t *testing.T) *calendarUpstream {
	t.Helper()
	st, err := calendar.OpenStore(t.TempDir(), calendar.StoreOptions{Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	cal, err := calendar.NewService(calendar.ServiceConfig{Store: st, Signer: rsaRootSigner{key}, CloseEarly: true,
		Grace: 20 * time.Millisecond, Logger: discard()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); cal.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done; st.Close() })
	return &calendarUpstream{cal: cal}
}

// runEngine closes the engine's rounds until the test ends (cleanups run
// last-in first-out: the engine stops before the calendar).
func runEngine(t *testing.T, e *Engine) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
}

// pduClient posts aggregator PDUs for one user.
type pduClient struct {
	t          *testing.T
	url        string
	login, key string
}

func (c pduClient) post(req *pdu.AggregatorRequest) (int, *pdu.AggregatorResponse) {
	c.t.Helper()
	req.Header = pdu.Header{LoginID: c.login}
	raw, err := req.Encode(ksi.SHA2_256, []byte(c.key))
	if err != nil {
		c.t.Fatal(err)
	}
	hc := &http.Client{Timeout: 30 * time.Second}
	resp, err := hc.Post(c.url, "application/ksi-request", bytes.NewReader(raw))
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		c.t.Fatal(err)
	}
	out, err := pdu.ParseAggregatorResponse(body)
	if err != nil {
		c.t.Fatalf("PDU response (%s): %v", resp.Status, err)
	}
	if err := out.Verify([]byte(c.key)); err != nil {
		c.t.Fatalf("response HMAC: %v", err)
	}
	return resp.StatusCode, out
}

// maxRequestsAdvertised asks the aggregator's configuration.
func (c pduClient) maxRequestsAdvertised() int {
	c.t.Helper()
	_, out := c.post(&pdu.AggregatorRequest{ConfigRequest: true})
	if out.Config == nil || !out.Config.HasMaxRequests {
		c.t.Fatalf("config %+v", out.Config)
	}
	return int(out.Config.MaxRequests)
}

// worstRequests are n requests at the highest level with 8-byte request
// ids (which become the metadata's sequence numbers) and the longest
// document hashes (SHA-512).
func worstRequests(n int, level uint64) []pdu.AggregationRequest {
	reqs := make([]pdu.AggregationRequest, n)
	for i := range reqs {
		reqs[i] = pdu.AggregationRequest{RequestID: ^uint64(0) - uint64(i), Hash: sha512Imprint(uint64(i)), Level: level, HasLevel: true}
	}
	return reqs
}

// longLogin is a login id long enough to take a TLV16 header in the
// metadata: the bound depends on the login, and must hold for long ones.
var longLogin = strings.Repeat("L", 300)

func longLoginUsers(t *testing.T) *server.Users {
	t.Helper()
	u, err := server.ParseUsers([]byte(longLogin + ":long-key\nanon:anon\n"))
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// A PDU with exactly the advertised maximum of requests is answered in
// full, every signature verifying; one more is refused as a whole with
// 0x103 before any of its hashes reaches the engine or the calendar.
func TestPDUAdvertisedMaximumAnsweredInFull(t *testing.T) {
	up := startCalendar(t)
	e := newEngine(t, up, Config{Period: 50 * time.Millisecond})
	ts := httptest.NewServer(e.PDUHandler(longLoginUsers(t)))
	defer ts.Close()
	c := pduClient{t, ts.URL, longLogin, "long-key"}

	n := c.maxRequestsAdvertised()
	if want := pdu.MaxResponses(longLogin, e.responseBound(longLogin)); n != want || n < 1 {
		t.Fatalf("advertised max requests %d, want %d", n, want)
	}
	if anon := (pduClient{t, ts.URL, "anon", "anon"}).maxRequestsAdvertised(); anon < n {
		t.Errorf("anon may send %d, the longer login %d", anon, n)
	}

	// One more than the maximum: refused, nothing queued or sent upstream
	// (the engine is not running, so anything queued would still be there).
	code, out := c.post(&pdu.AggregatorRequest{Requests: worstRequests(n+1, uint64(e.cfg.MaxLevel))})
	if code != http.StatusRequestEntityTooLarge || out.Error == nil || out.Error.Status != pdu.StatusInvalidPayload || len(out.Responses) != 0 {
		t.Fatalf("%d requests answered %d %+v with %d responses", n+1, code, out.Error, len(out.Responses))
	}
	if msg := out.Error.Message; !strings.Contains(msg, fmt.Sprintf("%d aggregation requests", n+1)) || !strings.Contains(msg, fmt.Sprintf("at most %d", n)) {
		t.Errorf("refusal message %q does not name the count and the limit", msg)
	}
	if q := e.QueueLen(); q != 0 {
		t.Fatalf("%d requests of a refused PDU queued", q)
	}
	e.CloseRound(context.Background())
	e.wg.Wait()
	if r := up.roots.Load(); r != 0 {
		t.Fatalf("%d roots of a refused PDU sent to the calendar", r)
	}

	// Exactly the maximum: every request signed and answered.
	runEngine(t, e)
	reqs := worstRequests(n, uint64(e.cfg.MaxLevel))
	code, out = c.post(&pdu.AggregatorRequest{Requests: reqs})
	if code != http.StatusOK || out.Error != nil || len(out.Responses) != n {
		t.Fatalf("%d requests answered %d, error %+v, %d responses", n, code, out.Error, len(out.Responses))
	}
	largest := 0
	for i, r := range out.Responses {
		if r.Status != 0 || r.RequestID != reqs[i].RequestID {
			t.Fatalf("response %d: id %d status %#x %s", i, r.RequestID, r.Status, r.ErrorMessage)
		}
		sig := clientSignature(t, r.SignatureElements, reqs[i].Level)
		rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: reqs[i].Hash, InputLevel: reqs[i].Level})
		if rep.Result != verifier.OK {
			t.Fatalf("signature %d: %s %s", i, rep.Code, rep.Message)
		}
		largest = max(largest, r.EncodedLen())
	}
	if up.roots.Load() == 0 {
		t.Fatal("no root reached the calendar")
	}
	t.Logf("max requests %d; largest answer %d bytes, bound %d", n, largest, e.responseBound(longLogin))
}

// The bound holds for real signatures made at its worst: a full round
// (the engine's maximum queue) at the maximum level, with a long login,
// 8-byte sequence numbers and SHA-512 document hashes, signed by a real
// calendar.
func TestSignatureBoundHoldsForRealSignatures(t *testing.T) {
	const maxQueue = 1024
	up := startCalendar(t)
	e := newEngine(t, up, Config{MaxQueue: maxQueue})
	type got struct {
		i   int
		sig []byte
		err error
	}
	res := make(chan got, maxQueue)
	for i := 0; i < maxQueue; i++ {
		r := Request{Hash: sha512Imprint(uint64(i)), Level: e.cfg.MaxLevel, Identity: Identity{ClientID: longLogin, Sequence: ^uint64(0) - uint64(i), HasSequence: true}}
		if err := e.Submit(r, func(x Signed) { res <- got{i, x.Signature, x.Err} }); err != nil {
			t.Fatal(err)
		}
	}
	e.CloseRound(context.Background())
	bound := e.signatureBound(longLogin)
	largest, deepest := 0, 0
	for k := 0; k < maxQueue; k++ {
		var g got
		select {
		case g = <-res:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d requests answered", k, maxQueue)
		}
		if g.err != nil {
			t.Fatal(g.err)
		}
		elems, err := signatureElements(g.sig)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for _, el := range elems {
			n += len(el)
		}
		largest = max(largest, n)
		sig, err := ksi.ParseSignature(g.sig)
		if err != nil {
			t.Fatal(err)
		}
		deepest = max(deepest, len(sig.Chains()[0].Links))
	}
	if want := 1 + roundDepth(maxQueue); deepest != want {
		t.Fatalf("deepest request chain has %d links, want %d (a full round)", deepest, want)
	}
	if largest > bound {
		t.Fatalf("a real signature takes %d bytes, over the bound of %d", largest, bound)
	}
	t.Logf("largest real signature %d bytes, bound %d", largest, bound)
}

// Each part of the bound covers the worst element the encoders write
// for it: longest names, 8-byte integers, level corrections on every link,
// the longest calendar chain before 2^32 and an RSA-8192 record.
func TestSizeBoundsCoverWorstCaseElements(t *testing.T) {
	name := strings.Repeat("n", upstreamNameLen)
	seq, reqTime := ^uint64(0), ^uint64(0)
	meta, err := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: name, MachineID: name, SequenceNumber: &seq, RequestTime: &reqTime})
	if err != nil {
		t.Fatal(err)
	}
	if max := metadataValueMax(upstreamNameLen, upstreamNameLen, true); len(meta) > max {
		t.Fatalf("metadata of %d bytes, bound %d", len(meta), max)
	}
	for _, in := range []struct {
		hash  ksi.Imprint
		bound int
	}{{imprint(1), imprintLen}, {sha512Imprint(1), docImprintLen}} {
		for _, entries := range []int{1, 2, 4} {
			links := []ksi.Link{{Left: true, LevelCorrection: 255, Metadata: &ksi.Metadata{Value: meta}}}
			for i := 0; i < upstreamTreeDepth; i++ {
				links = append(links, ksi.Link{Left: i%2 == 0, LevelCorrection: 255, Sibling: imprint(uint64(i))})
			}
			index := make([]uint64, entries)
			for i := range index {
				index[i] = ^uint64(0)
			}
			ch, err := ksi.NewAggregationChain(^uint64(0), index, in.hash, ksi.SHA2_256, links)
			if err != nil {
				t.Fatal(err)
			}
			if max := aggregationChainMax(entries, in.bound, len(meta), upstreamTreeDepth); len(ch.Raw) > max {
				t.Errorf("aggregation chain with a %s input and %d index entries: %d bytes, bound %d", in.hash.Alg(), entries, len(ch.Raw), max)
			}
		}
	}
	var cl []ksi.CalendarLink
	for i := 0; i < freshCalendarLinks; i++ {
		cl = append(cl, ksi.CalendarLink{Left: i%2 == 0, Sibling: imprint(uint64(i))})
	}
	cc, err := ksi.NewCalendarChain(1<<63, 1<<63-1, imprint(2), cl)
	if err != nil {
		t.Fatal(err)
	}
	if max := calendarChainMax(freshCalendarLinks); len(cc.Raw) > max {
		t.Errorf("calendar chain: %d bytes, bound %d", len(cc.Raw), max)
	}
	ar, err := ksi.NewCalendarAuthRecord(ksi.NewPublishedData(^uint64(0), imprint(3)), ksi.SignatureData{
		Type: strings.Repeat("1", maxSigTypeLen), Value: make([]byte, maxRSABits/8), CertificateID: make([]byte, maxCertIDLen)})
	if err != nil {
		t.Fatal(err)
	}
	if max := authRecordMax(); len(ar.Raw) > max {
		t.Errorf("authentication record: %d bytes, bound %d", len(ar.Raw), max)
	}
	for _, q := range []struct{ queue, depth int }{{1, 0}, {2, 1}, {3, 2}, {1024, 10}, {1025, 11}, {1_000_000, 20}} {
		if got := roundDepth(q.queue); got != q.depth {
			t.Errorf("roundDepth(%d) = %d, want %d", q.queue, got, q.depth)
		}
	}
}

// bloatedCalendar signs like fakeCalendar but adds a publication record
// with a long reference: its signatures are far larger than the bound
// assumes, as if the bound were wrong.
type bloatedCalendar struct{ refLen int }

func (b bloatedCalendar) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	meta, _ := ksi.AppendMetadataValue(nil, ksi.MetadataFields{ClientID: "aggregator"})
	r, err := round.Build(ksi.SHA2_256, []round.Request{{Hash: root, Level: level, Meta: meta}})
	if err != nil {
		return nil, err
	}
	top, _ := r.Root()
	const t = 1_800_000_001
	cal, err := ksi.NewCalendarChain(t, t, top, calendarLinks(t))
	if err != nil {
		return nil, err
	}
	var h ksi.Hasher
	out, _ := cal.Output(&h)
	pub, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, ksi.NewPublishedData(t, out), []string{strings.Repeat("r", b.refLen)}, nil)
	if err != nil {
		return nil, err
	}
	ans := &round.Answer{AggregationTime: t, Elements: append(append([]byte{}, cal.Raw...), pub.Raw...)}
	var w round.Writer
	return w.AppendSignature(nil, r, 0, ans)
}

// syncBuffer is a log sink safe for the server's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// If answers outgrow the bound, the PDU still answers what fits, gives
// the rest 0x200, logs at ERROR, and accepts fewer requests from then on.
func TestPDUAnswersThatOutgrowTheBound(t *testing.T) {
	var logs syncBuffer
	e, err := New(Config{Upstream: bloatedCalendar{refLen: 6000}, Period: 20 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	runEngine(t, e)
	ts := httptest.NewServer(e.PDUHandler(server.DevUsers()))
	defer ts.Close()
	c := pduClient{t, ts.URL, "anon", "anon"}
	n := c.maxRequestsAdvertised()
	reqs := worstRequests(n, 0)
	code, out := c.post(&pdu.AggregatorRequest{Requests: reqs})
	if code != http.StatusOK || len(out.Responses) != n {
		t.Fatalf("%d requests answered %d with %d responses", n, code, len(out.Responses))
	}
	signed := 0
	for i, r := range out.Responses {
		if r.RequestID != reqs[i].RequestID {
			t.Fatalf("response %d for request %d", i, r.RequestID)
		}
		switch {
		case r.Status == 0:
			if signed != i {
				t.Fatalf("response %d signed after an unanswered one", i)
			}
			signed++
			sig, err := ksi.SignatureFromElements(r.SignatureElements)
			if err != nil {
				t.Fatal(err)
			}
			if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: reqs[i].Hash}); rep.Result != verifier.OK {
				t.Fatalf("signature %d: %s %s", i, rep.Code, rep.Message)
			}
		case r.Status != pdu.StatusInternalError || r.ErrorMessage != errNoRoom:
			t.Fatalf("response %d: status %#x %q", i, r.Status, r.ErrorMessage)
		}
	}
	if signed == 0 || signed == n {
		t.Fatalf("%d of %d answered: the test did not exceed the PDU", signed, n)
	}
	for _, want := range []string{"level=ERROR msg=\"aggregator: a PDU answer exceeded its size bound", "level=ERROR msg=\"aggregator: signed requests could not be answered"} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %s:\n%s", want, logs.String())
		}
	}
	// The limit has come down to what the real answers need.
	m := c.maxRequestsAdvertised()
	if m >= n || m < signed-1 {
		t.Fatalf("max requests %d after the bound proved wrong (before %d, %d fitted)", m, n, signed)
	}
	t.Logf("%d of %d answered; max requests then %d", signed, n, m)
	code, out = c.post(&pdu.AggregatorRequest{Requests: worstRequests(m, 0)})
	if code != http.StatusOK || len(out.Responses) != m {
		t.Fatalf("%d requests answered %d with %d responses", m, code, len(out.Responses))
	}
	for i, r := range out.Responses {
		if r.Status != 0 {
			t.Fatalf("after the correction, response %d: %#x %s", i, r.Status, r.ErrorMessage)
		}
	}
}

// Through a parent aggregator (role aggregator), signatures have one
// more aggregation chain; the bound for a remote parent still holds, and
// they verify.
func TestSignatureBoundHoldsThroughAParent(t *testing.T) {
	up := startCalendar(t)
	parent := newEngine(t, up, Config{Period: 20 * time.Millisecond, MaxLevel: 64})
	runEngine(t, parent)
	name := strings.Repeat("c", upstreamNameLen)
	child := newEngine(t, UpstreamFunc(func(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
		res := parent.Sign(ctx, Request{Hash: root, Level: level, Identity: Identity{ClientID: name, MachineID: name}})
		return res.Signature, res.Err
	}), Config{})
	const n = 64
	type got struct {
		i   int
		sig []byte
		err error
	}
	res := make(chan got, n)
	for i := 0; i < n; i++ {
		r := Request{Hash: imprint(uint64(i)), Level: child.cfg.MaxLevel, Identity: Identity{ClientID: longLogin, Sequence: ^uint64(0), HasSequence: true}}
		if err := child.Submit(r, func(x Signed) { res <- got{i, x.Signature, x.Err} }); err != nil {
			t.Fatal(err)
		}
	}
	child.CloseRound(context.Background())
	bound := child.signatureBound(longLogin)
	largest := 0
	for k := 0; k < n; k++ {
		var g got
		select {
		case g = <-res:
		case <-time.After(30 * time.Second):
			t.Fatalf("only %d of %d requests answered", k, n)
		}
		if g.err != nil {
			t.Fatal(g.err)
		}
		sig, err := ksi.ParseSignature(g.sig)
		if err != nil {
			t.Fatal(err)
		}
		if c := len(sig.Chains()); c != 3 {
			t.Fatalf("%d aggregation chains, want 3 (child, parent, calendar)", c)
		}
		rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: imprint(uint64(g.i)), InputLevel: uint64(child.cfg.MaxLevel)})
		if rep.Result != verifier.OK {
			t.Fatalf("signature %d: %s %s", g.i, rep.Code, rep.Message)
		}
		largest = max(largest, len(g.sig)-4)
	}
	if largest > bound {
		t.Fatalf("a signature through a parent takes %d bytes, over the bound of %d", largest, bound)
	}
	t.Logf("largest signature through a parent %d bytes, bound %d", largest, bound)
}
