package server

import (
	"bufio"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// serveTestKSITCP serves answer as the signing service on a loopback
// ksi+tcp listener (development users: anon/anon) and returns a
// connection to it.
func serveTestKSITCP(t *testing.T, answer func(ctx context.Context, req *pdu.AggregatorRequest, key []byte) ([]byte, int)) (net.Conn, *bufio.Reader) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	svc := &PDUService[*pdu.AggregatorRequest]{ReqType: pdu.TypeAggregatorRequest, RespType: pdu.TypeAggregatorResponse,
		Parse: pdu.ParseAggregatorRequest, Envelope: func(q *pdu.AggregatorRequest) *pdu.Envelope { return &q.Envelope },
		Answer: answer, Refuse: RefuseAggregatorPDU}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		ServeKSITCP(ctx, ln, KSITCPOptions{Services: []KSITCPService{{Endpoint: svc, Route: "/gt-signingservice"}},
			Auth: NewAuthenticator(AuthConfig{}), Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), ShutdownGrace: time.Second})
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); cancel(); <-done })
	return c, bufio.NewReader(c)
}

// echoAnswer answers each request of req with status 0 and no signature.
func echoAnswer(req *pdu.AggregatorRequest, key []byte) ([]byte, int) {
	resp := &pdu.AggregatorResponse{Envelope: pdu.Envelope{Header: pdu.Header{LoginID: req.Header.LoginID}}}
	for _, r := range req.Requests {
		resp.Responses = append(resp.Responses, pdu.AggregationResponse{RequestID: r.RequestID})
	}
	b, _ := resp.Encode(req.HMAC.Alg(), key)
	return b, http.StatusOK
}

func readResponse(t *testing.T, c net.Conn, br *bufio.Reader) *pdu.AggregatorResponse {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, _, err := ReadKSIFrame(br, func(typ uint16, tlv16 bool) bool { return typ == pdu.TypeAggregatorResponse }, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := pdu.ParseAggregatorResponse(b)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// Answers leave as they are ready, not in the order of their requests;
// a service that panics gets its PDU answered 0x200 and the connection
// goes on.
func TestKSITCPAnswersAsReady(t *testing.T) {
	release := make(chan struct{})
	c, br := serveTestKSITCP(t, func(ctx context.Context, req *pdu.AggregatorRequest, key []byte) ([]byte, int) {
		switch req.Requests[0].RequestID {
		case 1:
			select {
			case <-release:
			case <-ctx.Done():
				return nil, 0
			}
		case 3:
			panic("test: a service bug")
		}
		return echoAnswer(req, key)
	})
	for _, id := range []uint64{1, 2, 3} {
		c.Write(testRequest(t, id))
	}
	r := readResponse(t, c, br)
	if r.Error == nil && (len(r.Responses) != 1 || r.Responses[0].RequestID == 1) {
		t.Fatalf("first answer %+v %+v: want 2 or the error of 3 before the held 1", r.Responses, r.Error)
	}
	got := map[uint64]bool{}
	var bug *pdu.ErrorPayload
	for i := 0; ; i++ {
		if r.Error != nil {
			bug = r.Error
		} else {
			if err := r.Verify([]byte("anon")); err != nil {
				t.Fatal(err)
			}
			got[r.Responses[0].RequestID] = true
		}
		if i == 1 {
			break
		}
		r = readResponse(t, c, br)
	}
	if !got[2] || bug == nil || bug.Status != pdu.StatusInternalError {
		t.Fatalf("answers %v, error %+v: want 2 signed and 3 answered 0x200", got, bug)
	}
	close(release)
	if r := readResponse(t, c, br); r.Error != nil || r.Responses[0].RequestID != 1 {
		t.Fatalf("held answer %+v %+v", r.Responses, r.Error)
	}
}

// The answers waiting for a connection's writer are bounded by a small
// constant, not by MaxInFlight: refusals queued there are charged to no
// budget, so a client that does not read must not make the node hold
// MaxInFlight of them per connection.
func TestKSITCPQueuedAnswersBounded(t *testing.T) {
	s, err := newKSITCPServer(KSITCPOptions{Auth: NewAuthenticator(AuthConfig{}), MaxInFlight: DefaultKSITCPMaxInFlight})
	if err != nil {
		t.Fatal(err)
	}
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newKSIConn(s, a)
	defer c.cancel()
	if got := cap(c.out); got > ksiTCPQueuedAnswers {
		t.Fatalf("a connection queues up to %d answers for its writer, want at most %d", got, ksiTCPQueuedAnswers)
	}
}
