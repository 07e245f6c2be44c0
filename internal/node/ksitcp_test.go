package node

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
	"github.com/tempel-ksi/tempel/ksi/tlv"
	"github.com/tempel-ksi/tempel/verifier"
)

// ksiTCPClient is a raw ksi+tcp client: it writes request PDUs and reads
// response PDUs, with the server's own framing reader.
type ksiTCPClient struct {
	t  *testing.T
	c  net.Conn
	br *bufio.Reader
}

func dialKSITCP(t *testing.T, n *Node) *ksiTCPClient {
	t.Helper()
	k, err := dialKSITCPErr(t, n)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// dialKSITCPErr is dialKSITCP for a dial that may be refused.
func dialKSITCPErr(t *testing.T, n *Node) (*ksiTCPClient, error) {
	c, err := net.Dial("tcp", n.KSITCPAddr().String())
	if err != nil {
		return nil, err
	}
	t.Cleanup(func() { c.Close() })
	return &ksiTCPClient{t: t, c: c, br: bufio.NewReader(c)}, nil
}

func (k *ksiTCPClient) write(b []byte) {
	k.t.Helper()
	k.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := k.c.Write(b); err != nil {
		k.t.Fatal(err)
	}
}

// read reads the next response PDU, failing the test after 20 s.
func (k *ksiTCPClient) read() ([]byte, uint16) {
	k.t.Helper()
	b, typ, err := k.next(20 * time.Second)
	if err != nil {
		k.t.Fatalf("reading a response PDU: %v", err)
	}
	return b, typ
}

func (k *ksiTCPClient) next(d time.Duration) ([]byte, uint16, error) {
	k.c.SetReadDeadline(time.Now().Add(d))
	return server.ReadKSIFrame(k.br, func(typ uint16, tlv16 bool) bool {
		return tlv16 && (typ == pdu.TypeAggregatorResponse || typ == pdu.TypeExtenderResponse)
	}, nil)
}

// closedWithin asserts that the server closes the connection within d
// (the read sees the end of the stream, or a reset).
func (k *ksiTCPClient) closedWithin(d time.Duration) {
	k.t.Helper()
	k.c.SetReadDeadline(time.Now().Add(d))
	_, err := k.br.ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		k.t.Fatalf("connection not closed within %s (read: %v)", d, err)
	}
}

func signPDU(t *testing.T, login, key string, ids ...uint64) []byte {
	t.Helper()
	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: login}}}
	for _, id := range ids {
		req.Requests = append(req.Requests, pdu.AggregationRequest{RequestID: id, Hash: docHash(fmt.Sprint("ksi+tcp ", id))})
	}
	b, err := req.Encode(ksi.SHA2_256, []byte(key))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func extendPDU(t *testing.T, id, aggTime, pubTime uint64) []byte {
	t.Helper()
	req := &pdu.ExtenderRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}},
		Requests: []pdu.ExtendRequest{{RequestID: id, AggregationTime: aggTime, PublicationTime: pubTime, HasPublicationTime: true}}}
	b, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// signResponse parses and authenticates an aggregator response.
func signResponse(t *testing.T, b []byte) *pdu.AggregatorResponse {
	t.Helper()
	r, err := pdu.ParseAggregatorResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	if r.Error == nil || r.Header.LoginID != "" {
		if err := r.Verify([]byte("anon")); err != nil {
			t.Fatalf("response HMAC: %v", err)
		}
	}
	return r
}

// startKSITCP starts a node with a ksi+tcp listener on loopback.
func startKSITCP(t *testing.T, cfg Config) *started {
	t.Helper()
	cfg.KSITCPListen = "127.0.0.1:0"
	if cfg.DataDir == "" {
		cfg.DataDir = t.TempDir()
	}
	return start(t, cfg)
}

// Many PDUs written back to back on one connection, signing and
// extending, all answered on it and matched by request id; the
// signatures verify, and extended with the answers, verify against the
// publications file.
func TestKSITCPPipelinedSignAndExtend(t *testing.T) {
	const n = 200
	s := startKSITCP(t, Config{Role: RoleAll, PublishEvery: time.Second})
	k := dialKSITCP(t, s.n)
	var all []byte
	for i := uint64(1); i <= n; i++ {
		all = append(all, signPDU(t, "anon", "anon", i)...)
	}
	k.write(all)
	sigs := map[uint64]*ksi.Signature{}
	for range n {
		b, typ := k.read()
		if typ != pdu.TypeAggregatorResponse {
			t.Fatalf("response type %#x", typ)
		}
		r := signResponse(t, b)
		if len(r.Responses) != 1 || r.Responses[0].Status != 0 {
			t.Fatalf("response %+v %+v", r.Responses, r.Error)
		}
		id := r.Responses[0].RequestID
		if sigs[id] != nil || id < 1 || id > n {
			t.Fatalf("request id %d answered twice or never asked", id)
		}
		sig, err := ksi.SignatureFromElements(r.Responses[0].SignatureElements)
		if err != nil {
			t.Fatal(err)
		}
		if rep := verifier.Verify(context.Background(), sig, verifier.Internal, verifier.Options{Document: docHash(fmt.Sprint("ksi+tcp ", id))}); rep.Result != verifier.OK {
			t.Fatalf("signature %d: %s %s", id, rep.Code, rep.Message)
		}
		sigs[id] = sig
	}
	// A publication after every signature, then extend all of them, in
	// one write, on the same connection, with a signing PDU among them.
	var last uint64
	for _, sig := range sigs {
		last = max(last, sig.SigningTime())
	}
	waitFor(t, 20*time.Second, "a publication after the signatures", func() bool {
		return len(s.n.pub.Publications()) > 0 && s.n.pub.Latest().Data.Time > last
	})
	pub := s.n.pub.Latest()
	all = all[:0]
	for id, sig := range sigs {
		all = append(all, extendPDU(t, id, sig.SigningTime(), pub.Data.Time)...)
	}
	all = append(all, signPDU(t, "anon", "anon", n+1)...)
	k.write(all)
	rec, _ := pub.WithType(ksi.TypePublicationRecord)
	pf := trustedPubFile(t, s)
	extended, signed := 0, 0
	for range n + 1 {
		b, typ := k.read()
		if typ == pdu.TypeAggregatorResponse {
			if r := signResponse(t, b); len(r.Responses) != 1 || r.Responses[0].RequestID != n+1 || r.Responses[0].Status != 0 {
				t.Fatalf("signing among extensions: %+v", r.Responses)
			}
			signed++
			continue
		}
		r, err := pdu.ParseExtenderResponse(b)
		if err != nil {
			t.Fatal(err)
		}
		if err := r.Verify([]byte("anon")); err != nil || len(r.Responses) != 1 || r.Responses[0].Status != 0 {
			t.Fatalf("extend response %+v %+v (HMAC: %v)", r.Responses, r.Error, err)
		}
		id := r.Responses[0].RequestID
		sig := sigs[id]
		if sig == nil {
			t.Fatalf("extension of request id %d: answered twice or never asked", id)
		}
		delete(sigs, id)
		e, err := tlv.ReadOne(r.Responses[0].CalendarChain)
		if err != nil {
			t.Fatal(err)
		}
		chain, err := ksi.ParseCalendarChain(e)
		if err != nil {
			t.Fatal(err)
		}
		ext, err := sig.Extend(chain, rec)
		if err != nil {
			t.Fatal(err)
		}
		if rep := verifier.Verify(context.Background(), ext, verifier.PublicationsFileBased, verifier.Options{Document: docHash(fmt.Sprint("ksi+tcp ", id)), PublicationsFile: pf}); rep.Result != verifier.OK {
			t.Fatalf("extended signature %d: %s %s %s", id, rep.Result, rep.Code, rep.Message)
		}
		extended++
	}
	if extended != n || signed != 1 {
		t.Fatalf("%d extended, %d signed; want %d and 1", extended, signed, n)
	}
	m := metricsText(t, s)
	for _, want := range []string{
		`tempel_requests_total{interface="ksi-tcp",method="gt-signingservice",status="200"} 201`,
		`tempel_requests_total{interface="ksi-tcp",method="gt-extendingservice",status="200"} 200`,
		`tempel_ksitcp_connections_total 1`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func metricsText(t *testing.T, s *started) string {
	t.Helper()
	req, _ := http.NewRequest("GET", "http://"+s.addr+"/metrics", nil)
	req.SetBasicAuth("anon", "anon")
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	b, _ := io.ReadAll(r.Body)
	return string(b)
}

// Authentication is that of the HTTP path: a wrong key and an unknown
// login get the same bare 0x102, and the connection serves the next PDU;
// a PDU that parses as nothing gets 0x101 and the stream goes on, as its
// frame was whole.
func TestKSITCPRefusals(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("anon:anon\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	s := startKSITCP(t, Config{Role: RoleAll, UsersFile: users})
	k := dialKSITCP(t, s.n)
	bad := map[string][]byte{
		"wrong key":     signPDU(t, "anon", "wrong", 1),
		"unknown login": signPDU(t, "mallory", "anon", 2),
	}
	var answers [][]byte
	for what, b := range bad {
		k.write(b)
		resp, _ := k.read()
		r := signResponse(t, resp)
		if r.Error == nil || r.Error.Status != pdu.StatusAuthFailure || len(r.Responses) != 0 {
			t.Fatalf("%s: %+v %+v", what, r.Error, r.Responses)
		}
		answers = append(answers, resp)
	}
	if !bytes.Equal(answers[0], answers[1]) {
		t.Fatalf("wrong key and unknown login answered differently: %x / %x", answers[0], answers[1])
	}
	// A whole frame that is no valid request: 0x101, the stream goes on.
	k.write([]byte{0x82, 0x20, 0x00, 0x02, 0x01, 0x00})
	resp, _ := k.read()
	if r := signResponse(t, resp); r.Error == nil || r.Error.Status != pdu.StatusInvalidRequest {
		t.Fatalf("unparsable PDU: %+v", r.Error)
	}
	k.write(signPDU(t, "anon", "anon", 3))
	resp, _ = k.read()
	if r := signResponse(t, resp); len(r.Responses) != 1 || r.Responses[0].Status != 0 || r.Responses[0].RequestID != 3 {
		t.Fatalf("after the refusals: %+v %+v", r.Responses, r.Error)
	}
	if m := metricsText(t, s); !strings.Contains(m, `tempel_auth_refused_total{interface="pdu",reason="wrong HMAC"} 1`) {
		t.Errorf("the wrong HMAC is not counted with the PDU refusals")
	}
}

// The largest PDU a TLV16 header can frame (the bound of the HTTP path)
// with more requests than a response can carry is refused whole (0x103,
// nothing signed); the stream goes on.
func TestKSITCPOversizePDURefused(t *testing.T) {
	s := startKSITCP(t, Config{Role: RoleAll})
	k := dialKSITCP(t, s.n)
	var ids []uint64
	for i := uint64(1); ; i++ {
		ids = append(ids, i)
		if len(signPDU(t, "anon", "anon", ids...)) > pdu.MaxSize-100 {
			break
		}
	}
	big := signPDU(t, "anon", "anon", ids...)
	k.write(big)
	resp, _ := k.read()
	r := signResponse(t, resp)
	if r.Error == nil || r.Error.Status != pdu.StatusInvalidPayload || len(r.Responses) != 0 || !strings.Contains(r.Error.Message, "at most") {
		t.Fatalf("%d requests in a %d-byte PDU: %+v, %d responses", len(ids), len(big), r.Error, len(r.Responses))
	}
	k.write(signPDU(t, "anon", "anon", 7))
	resp, _ = k.read()
	if r := signResponse(t, resp); len(r.Responses) != 1 || r.Responses[0].Status != 0 {
		t.Fatalf("after the oversize PDU: %+v", r.Responses)
	}
}

// A stream that is not request PDUs gets a bare 0x101 and the connection
// is closed: garbage, an HTTP request, a TLV8 element.
func TestKSITCPGarbageClosesConnection(t *testing.T) {
	s := startKSITCP(t, Config{Role: RoleAll})
	for name, garbage := range map[string][]byte{
		"http":     []byte("GET /gt-signingservice HTTP/1.1\r\nHost: x\r\n\r\n"),
		"tlv8":     {0x02, 0x03, 1, 2, 3},
		"response": {0x82, 0x21, 0x00, 0x00},
	} {
		t.Run(name, func(t *testing.T) {
			k := dialKSITCP(t, s.n)
			k.write(signPDU(t, "anon", "anon", 1)) // a good one first: its answer comes too
			k.write(garbage)
			got := map[uint64]bool{}
			var errPDU *pdu.AggregatorResponse
			for range 2 {
				b, _ := k.read()
				r := signResponse(t, b)
				if r.Error != nil {
					errPDU = r
				} else {
					got[r.Responses[0].RequestID] = true
				}
			}
			if !got[1] || errPDU == nil || errPDU.Error.Status != pdu.StatusInvalidRequest || !strings.Contains(errPDU.Error.Message, "closing") {
				t.Fatalf("answers: signed %v, error %+v", got, errPDU)
			}
			k.closedWithin(5 * time.Second)
		})
	}
}

// An idle connection is closed after the idle timeout; a PDU that starts
// and stalls, after the read timeout.
func TestKSITCPTimeouts(t *testing.T) {
	const idle, read = 300 * time.Millisecond, 400 * time.Millisecond
	s := startKSITCP(t, Config{Role: RoleAll, IdleTimeout: idle, ReadTimeout: read})
	// The idle timer starts when the server accepts, which is after the
	// dial starts and may be before it returns.
	start := time.Now()
	k := dialKSITCP(t, s.n)
	k.closedWithin(10 * time.Second)
	if d := time.Since(start); d < idle {
		t.Fatalf("closed after %s, before the idle timeout %s", d, idle)
	}
	k = dialKSITCP(t, s.n)
	k.write([]byte{0x82, 0x20, 0x00}) // three bytes of a header
	start = time.Now()
	k.closedWithin(10 * time.Second)
	if d := time.Since(start); d < read-50*time.Millisecond {
		t.Fatalf("stalled PDU closed after %s, before the read timeout %s", d, read)
	}
	waitFor(t, 5*time.Second, "the close reasons to be counted", func() bool {
		m := metricsText(t, s)
		return strings.Contains(m, `tempel_ksitcp_connections_closed_total{reason="idle"} 1`) &&
			strings.Contains(m, `tempel_ksitcp_connections_closed_total{reason="read-timeout"} 1`)
	})
}

// The ksi+tcp connections count against --max-conns together with the
// main listener's: beyond the limit a connection is closed at once.
func TestKSITCPConnectionLimit(t *testing.T) {
	s := startKSITCP(t, Config{Role: RoleAll, MaxConns: 2})
	// One HTTP keep-alive connection on the main listener, one ksi+tcp.
	hc := &http.Client{Transport: &http.Transport{MaxConnsPerHost: 1}}
	defer hc.CloseIdleConnections()
	r, err := hc.Get("http://" + s.addr + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, r.Body)
	r.Body.Close()
	k1 := dialKSITCP(t, s.n)
	k1.write(signPDU(t, "anon", "anon", 1))
	k1.read()
	// The server closes the third connection at once, with a reset; the
	// reset may already be there when the dial returns, or come on the
	// write or the read: each is the refusal.
	if k2, err := dialKSITCPErr(t, s.n); err == nil {
		k2.c.Write(signPDU(t, "anon", "anon", 2))
		if _, _, err := k2.next(10 * time.Second); err == nil {
			t.Fatal("a third connection was answered with a limit of 2")
		}
	}
	// A place given back is taken again.
	k1.c.Close()
	waitFor(t, 10*time.Second, "a ksi+tcp connection within the limit", func() bool {
		k, err := dialKSITCPErr(t, s.n)
		if err != nil {
			return false
		}
		k.c.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if _, err := k.c.Write(signPDU(t, "anon", "anon", 3)); err != nil {
			return false
		}
		_, _, err = k.next(10 * time.Second)
		return err == nil
	})
}

// With rounds held, PDUs in flight beyond the connection's limit, and
// beyond the node's memory budget, are refused at once, each request with
// 0x106 under its own request id in an authenticated response, while
// those admitted are signed once the round closes.
func TestKSITCPOverloadRefusedAtOnce(t *testing.T) {
	const admitted = 4
	tcpCost := int64(len(signPDU(t, "anon", "anon", 1))) + server.KSITCPPDUCost
	perPDU := tcpCost + aggregator.CostCaller
	for _, tc := range []struct {
		name string
		cfg  Config
		why  string
	}{
		{"in-flight", Config{KSITCPMaxInFlight: admitted}, "in flight"},
		// Room for the admitted PDUs and half of another's bytes: the
		// listener refuses before the aggregator is asked.
		{"memory", Config{MaxMemory: RequestBudgetShare * (admitted*perPDU + tcpCost/2)}, "memory for waiting requests"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.cfg.KSITCPListen = "127.0.0.1:0"
			n, ctx := manualNode(t, tc.cfg)
			sctx, stop := context.WithCancel(ctx)
			wait := n.serveKSITCP(sctx)
			t.Cleanup(func() { stop(); wait() })
			k := dialKSITCP(t, n)
			for i := uint64(1); i <= admitted; i++ {
				k.write(signPDU(t, "anon", "anon", i))
				waitFor(t, 10*time.Second, "the request in the round", func() bool { return n.agg.QueueLen() == int(i) })
			}
			k.write(append(signPDU(t, "anon", "anon", admitted+1), signPDU(t, "anon", "anon", admitted+2)...))
			for range 2 {
				b, _ := k.read()
				r := signResponse(t, b)
				if len(r.Responses) != 1 || r.Responses[0].Status != pdu.StatusAggrTooManyRequests || r.Responses[0].RequestID <= admitted ||
					!strings.Contains(r.Responses[0].ErrorMessage, tc.why) {
					t.Fatalf("refusal %+v %+v", r.Responses, r.Error)
				}
			}
			if q := n.agg.QueueLen(); q != admitted {
				t.Fatalf("%d requests in the round after the refusals, want %d", q, admitted)
			}
			n.agg.CloseRound(ctx)
			for range admitted {
				b, _ := k.read()
				if r := signResponse(t, b); len(r.Responses) != 1 || r.Responses[0].Status != 0 || r.Responses[0].RequestID > admitted {
					t.Fatalf("admitted: %+v", r.Responses)
				}
			}
		})
	}
}

// With TLS the listener speaks TLS, with the node's certificate.
func TestKSITCPTLS(t *testing.T) {
	dir := t.TempDir()
	s := startKSITCP(t, Config{Role: RoleAll, DataDir: dir, TLS: TLSConfig{Dev: true}})
	_, roots := devRoots(t, dir)
	c, err := tls.Dial("tcp", s.n.KSITCPAddr().String(), &tls.Config{RootCAs: roots, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	k := &ksiTCPClient{t: t, c: c, br: bufio.NewReader(c)}
	k.write(signPDU(t, "anon", "anon", 9))
	b, _ := k.read()
	if r := signResponse(t, b); len(r.Responses) != 1 || r.Responses[0].Status != 0 {
		t.Fatalf("over TLS: %+v", r.Responses)
	}
	// Plaintext on the TLS listener gets no PDU back.
	p := dialKSITCP(t, s.n)
	p.write(signPDU(t, "anon", "anon", 10))
	if b, _, err := p.next(10 * time.Second); err == nil {
		t.Fatalf("plaintext PDU answered on a TLS listener: %x", b)
	}
}

// At shutdown the listener stops reading, and a PDU in flight is still
// answered on its connection, which is then closed.
func TestKSITCPShutdownAnswersInFlight(t *testing.T) {
	n, ctx := manualNode(t, Config{KSITCPListen: "127.0.0.1:0"})
	sctx, stop := context.WithCancel(ctx)
	wait := n.serveKSITCP(sctx)
	k := dialKSITCP(t, n)
	k.write(signPDU(t, "anon", "anon", 1))
	waitFor(t, 10*time.Second, "the request in the round", func() bool { return n.agg.QueueLen() == 1 })
	stop()
	// New connections are no longer taken.
	waitFor(t, 10*time.Second, "the listener to close", func() bool {
		c, err := net.Dial("tcp", n.KSITCPAddr().String())
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	n.agg.CloseRound(ctx)
	b, _ := k.read()
	if r := signResponse(t, b); len(r.Responses) != 1 || r.Responses[0].Status != 0 {
		t.Fatalf("in flight at shutdown: %+v %+v", r.Responses, r.Error)
	}
	k.closedWithin(10 * time.Second)
	wait()
}

// A connection waiting for its answers is not idle: it outlives the idle
// timeout while a PDU is in flight, gets its answer, and only then idles
// out.
func TestKSITCPInFlightIsNotIdle(t *testing.T) {
	const idle = 200 * time.Millisecond
	n, ctx := manualNode(t, Config{KSITCPListen: "127.0.0.1:0", IdleTimeout: idle})
	sctx, stop := context.WithCancel(ctx)
	wait := n.serveKSITCP(sctx)
	t.Cleanup(func() { stop(); wait() })
	k := dialKSITCP(t, n)
	k.write(signPDU(t, "anon", "anon", 1))
	waitFor(t, 10*time.Second, "the request in the round", func() bool { return n.agg.QueueLen() == 1 })
	// Several idle timeouts pass with the answer held; the connection
	// still reads PDUs.
	held := time.Now()
	waitFor(t, 10*time.Second, "three idle timeouts", func() bool { return time.Since(held) > 3*idle })
	k.write(signPDU(t, "anon", "anon", 2))
	waitFor(t, 10*time.Second, "the second request in the round", func() bool { return n.agg.QueueLen() == 2 })
	n.agg.CloseRound(ctx)
	for range 2 {
		b, _ := k.read()
		if r := signResponse(t, b); len(r.Responses) != 1 || r.Responses[0].Status != 0 {
			t.Fatalf("answer after the idle timeout: %+v %+v", r.Responses, r.Error)
		}
	}
	k.closedWithin(10 * time.Second)
}

// A client that sends its PDUs and half-closes (the end of its requests)
// still gets every answer, then the end of the stream.
func TestKSITCPHalfClose(t *testing.T) {
	s := startKSITCP(t, Config{Role: RoleAll})
	k := dialKSITCP(t, s.n)
	k.write(append(signPDU(t, "anon", "anon", 1), signPDU(t, "anon", "anon", 2)...))
	if err := k.c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		b, _ := k.read()
		if r := signResponse(t, b); len(r.Responses) != 1 || r.Responses[0].Status != 0 {
			t.Fatalf("after the half-close: %+v %+v", r.Responses, r.Error)
		}
	}
	if _, _, err := k.next(10 * time.Second); err != io.EOF {
		t.Fatalf("after the answers: %v, want EOF", err)
	}
}

// A client that sends and never reads has its connection closed once an
// answer cannot be written within the write timeout.
func TestKSITCPWriteTimeout(t *testing.T) {
	const write = 300 * time.Millisecond
	s := startKSITCP(t, Config{Role: RoleAll, WriteTimeout: write})
	c, err := net.Dial("tcp", s.n.KSITCPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// PDUs as full as the server allows, some 30 MB of answers: more
	// than the socket buffers of both ends hold.
	per := maxRequestsPerPDU(t, s)
	var all []byte
	for i := range uint64(500) {
		ids := make([]uint64, per)
		for j := range ids {
			ids[j] = i*uint64(per) + uint64(j) + 1
		}
		all = append(all, signPDU(t, "anon", "anon", ids...)...)
	}
	c.SetWriteDeadline(time.Now().Add(20 * time.Second))
	if _, err := c.Write(all); err != nil {
		t.Fatal(err)
	}
	// Read from the registry: with a 300 ms write timeout, a scrape of
	// /metrics on a loaded machine may itself be cut off.
	waitFor(t, 30*time.Second, "the connection closed for its unread answers", func() bool {
		v, _ := seriesValue(t, s, `tempel_ksitcp_connections_closed_total{reason="write-failed"}`)
		return v == 1
	})
}

// maxRequestsPerPDU asks the aggregator's configuration over ksi+tcp.
func maxRequestsPerPDU(t *testing.T, s *started) int {
	t.Helper()
	req := &pdu.AggregatorRequest{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: "anon"}}, ConfigRequest: true}
	b, err := req.Encode(ksi.SHA2_256, []byte("anon"))
	if err != nil {
		t.Fatal(err)
	}
	k := dialKSITCP(t, s.n)
	k.write(b)
	resp, _ := k.read()
	r := signResponse(t, resp)
	if r.Config == nil || r.Config.MaxRequests < 2 {
		t.Fatalf("configuration %+v", r.Config)
	}
	return int(r.Config.MaxRequests)
}
