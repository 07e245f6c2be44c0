package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"syscall"
	"time"
)

// h1pool posts to one URL over at most max keep-alive HTTP/1.1
// connections, writing the request and reading the answer in the
// caller's goroutine. It exists for the reason h2conn does: net/http's
// client (two goroutines per connection, channels and a context per
// request) costs the shared machine about as much per token as the
// responder it measures. A connection is opened only when no idle one
// is left; callers beyond max wait for one.
type h1pool struct {
	addr string
	tls  *tls.Config
	max  int
	head []byte // the request up to its body, for a body of bodyLen
	body int

	mu      sync.Mutex
	idle    []*h1conn
	open    int
	waiters []chan *h1conn // a nil *h1conn: dial one (a slot was freed)
}

type h1conn struct {
	c    net.Conn
	br   *bufio.Reader
	used bool // has carried an answer
}

// maxWaitersPerConn bounds the requests waiting in the generator for a
// connection, per connection of the pool: past it a request fails at
// once (errGeneratorBacklog) instead of piling up goroutines while the
// server, or the pool's connections, cannot keep up with the rate.
const maxWaitersPerConn = 4

// errGeneratorBacklog is a request the generator could not send: every
// connection was busy and too many requests were waiting for one.
var errGeneratorBacklog = errors.New("bench: not sent: every connection busy and the generator's queue for one full (the server answers slower than the connections can carry the rate)")

// connLimitError makes err a refusal when it ended a new connection
// before any answer: a server at its connection limit closes the
// connections beyond it as it accepts them, which the client sees as a
// reset or an end of input.
func connLimitError(err error, fresh bool) error {
	if !fresh {
		return err
	}
	if errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &refusedError{"connection closed by the server before any answer (its connection limit): " + err.Error()}
	}
	return err
}

// newH1Pool makes a pool posting RFC 3161 requests of bodyLen bytes to
// path.
func newH1Pool(addr string, tc *tls.Config, max int, path, login, key string, bodyLen int) *h1pool {
	return newH1PoolFor(addr, tc, max, path, "application/timestamp-query", login, key, bodyLen)
}

// newH1PoolFor makes a pool posting bodies of contentType and bodyLen
// bytes to path, with Basic credentials when login is set.
func newH1PoolFor(addr string, tc *tls.Config, max int, path, contentType, login, key string, bodyLen int) *h1pool {
	var h bytes.Buffer
	fmt.Fprintf(&h, "POST %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tempel-bench\r\nContent-Type: %s\r\n", path, addr, contentType)
	if login != "" {
		fmt.Fprintf(&h, "Authorization: Basic %s\r\n", base64.StdEncoding.EncodeToString([]byte(login+":"+key)))
	}
	fmt.Fprintf(&h, "Content-Length: %d\r\n\r\n", bodyLen)
	if tc != nil {
		// HTTP/1.1 only: the server gives an h2 connection to gRPC.
		tc = tc.Clone()
		tc.NextProtos = []string{"http/1.1"}
	}
	return &h1pool{addr: addr, tls: tc, max: max, head: h.Bytes(), body: bodyLen}
}

// postTimed sends body and returns the answer's status and body, and
// when the request left (Unix ns): once it had a connection, after any
// wait for one.
func (p *h1pool) postTimed(ctx context.Context, body []byte) (status int, resp []byte, sent int64, err error) {
	if len(body) != p.body {
		return 0, nil, time.Now().UnixNano(), fmt.Errorf("bench: internal error: body of %d bytes, want %d", len(body), p.body)
	}
	c, err := p.get(ctx)
	sent = time.Now().UnixNano()
	if err != nil {
		return 0, nil, sent, connLimitError(err, true)
	}
	status, resp, keep, err := c.roundTrip(p.head, body)
	if err != nil {
		err = connLimitError(err, !c.used)
	}
	c.used = true
	if err != nil || !keep {
		p.discard(c)
	} else {
		p.put(c)
	}
	return status, resp, sent, err
}

func (p *h1pool) get(ctx context.Context) (*h1conn, error) {
	p.mu.Lock()
	if n := len(p.idle); n > 0 {
		c := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return c, nil
	}
	if p.open < p.max {
		p.open++
		p.mu.Unlock()
		return p.dial(ctx)
	}
	if len(p.waiters) >= maxWaitersPerConn*p.max {
		p.mu.Unlock()
		return nil, errGeneratorBacklog
	}
	w := make(chan *h1conn, 1)
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()
	select {
	case c := <-w:
		if c == nil {
			return p.dial(ctx)
		}
		return c, nil
	case <-ctx.Done():
		p.mu.Lock()
		for i, x := range p.waiters {
			if x == w {
				p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
				p.mu.Unlock()
				return nil, ctx.Err()
			}
		}
		p.mu.Unlock()
		// Handed a connection or a slot meanwhile: give it back.
		if c := <-w; c != nil {
			p.put(c)
		} else {
			p.release()
		}
		return nil, ctx.Err()
	}
}

// dial opens a connection in a slot already counted in open.
func (p *h1pool) dial(ctx context.Context) (*h1conn, error) {
	d := net.Dialer{Timeout: 5 * time.Second}
	var c net.Conn
	var err error
	if p.tls != nil {
		c, err = (&tls.Dialer{NetDialer: &d, Config: p.tls}).DialContext(ctx, "tcp", p.addr)
	} else {
		c, err = d.DialContext(ctx, "tcp", p.addr)
	}
	if err != nil {
		p.release()
		return nil, err
	}
	return &h1conn{c: c, br: bufio.NewReaderSize(c, 4096)}, nil
}

func (p *h1pool) put(c *h1conn) {
	p.mu.Lock()
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		w <- c
		return
	}
	p.idle = append(p.idle, c)
	p.mu.Unlock()
}

func (p *h1pool) discard(c *h1conn) {
	c.c.Close()
	p.release()
}

// release frees a connection's slot: a waiter dials in it.
func (p *h1pool) release() {
	p.mu.Lock()
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		p.mu.Unlock()
		w <- nil
		return
	}
	p.open--
	p.mu.Unlock()
}

// close closes the idle connections.
func (p *h1pool) close() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.open -= len(idle)
	p.mu.Unlock()
	for _, c := range idle {
		c.c.Close()
	}
}

// roundTrip writes one request and reads its answer; keep says whether
// the connection may carry another.
func (c *h1conn) roundTrip(head, body []byte) (status int, resp []byte, keep bool, err error) {
	c.c.SetDeadline(time.Now().Add(tsaCallTimeout))
	if _, err := (&net.Buffers{head, body}).WriteTo(c.c); err != nil {
		return 0, nil, false, err
	}
	line, err := c.line()
	if err != nil {
		return 0, nil, false, err
	}
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	if status, err = strconv.Atoi(string(line[9:12])); err != nil {
		return 0, nil, false, fmt.Errorf("bad status line %q", line)
	}
	length, chunked, keep := -1, false, true
	for {
		h, err := c.line()
		if err != nil {
			return 0, nil, false, err
		}
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			return 0, nil, false, fmt.Errorf("bad header %q", h)
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			if length, err = strconv.Atoi(string(v)); err != nil || length < 0 || length > maxAnswer {
				return 0, nil, false, fmt.Errorf("bad Content-Length %q", v)
			}
		case bytes.EqualFold(k, []byte("Transfer-Encoding")):
			chunked = bytes.EqualFold(v, []byte("chunked"))
		case bytes.EqualFold(k, []byte("Connection")):
			keep = !bytes.EqualFold(v, []byte("close"))
		}
	}
	switch {
	case chunked:
		resp, err = c.chunked()
	case length >= 0:
		resp = make([]byte, length)
		_, err = io.ReadFull(c.br, resp)
	default:
		return 0, nil, false, errors.New("an answer without a length")
	}
	if err != nil {
		return 0, nil, false, err
	}
	return status, resp, keep, nil
}

// maxAnswer bounds an answer's body: a token with certificates and an
// extended KSI signature is a few KiB.
const maxAnswer = 1 << 20

// line reads a CRLF-terminated line without its end.
func (c *h1conn) line() ([]byte, error) {
	l, err := c.br.ReadSlice('\n')
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(bytes.TrimSuffix(l, []byte("\n")), []byte("\r")), nil
}

// chunked reads a chunked body (and its trailer section).
func (c *h1conn) chunked() ([]byte, error) {
	var out []byte
	for {
		l, err := c.line()
		if err != nil {
			return nil, err
		}
		if i := bytes.IndexByte(l, ';'); i >= 0 {
			l = l[:i]
		}
		n, err := strconv.ParseUint(string(bytes.TrimSpace(l)), 16, 32)
		if err != nil || len(out)+int(n) > maxAnswer {
			return nil, fmt.Errorf("bad chunk size %q", l)
		}
		if n == 0 {
			for {
				t, err := c.line()
				if err != nil {
					return nil, err
				}
				if len(t) == 0 {
					return out, nil
				}
			}
		}
		start := len(out)
		out = append(out, make([]byte, n)...)
		if _, err := io.ReadFull(c.br, out[start:]); err != nil {
			return nil, err
		}
		if end, err := c.line(); err != nil || len(end) != 0 {
			return nil, errors.New("bad chunk end")
		}
	}
}

// DefaultHTTPConns bounds the HTTP/1.1 connections of ModeREST and
// ModePDU when [Config.HTTPConns] is 0, as DefaultTSAConns does for
// ModeTSA: an HTTP/1.1 request holds its connection until it is answered
// (a signature waits for its round and calendar second, up to about a
// second), so the connections bound the requests in flight; requests
// beyond them wait in the generator, and that wait counts in their
// latency from the schedule. The server refuses connections beyond its
// own --max-conns (10,000 by default).
const DefaultHTTPConns = DefaultTSAConns

// bodySnippet is the start of an answer's body for an error message.
func bodySnippet(body []byte) string {
	const most = 200
	if len(body) > most {
		return string(body[:most]) + "..."
	}
	return string(body)
}
