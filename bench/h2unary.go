package bench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/codes"
)

// h2conn makes unary gRPC calls over one plaintext HTTP/2 connection,
// writing the frames itself. It exists because gRPC-Go's client spends
// more CPU per call than the server it is measuring (header encoding per
// call, a goroutine and a stream object per call, a timer, retries): on
// a machine shared with the server, the generator would be what limits a
// unary load test. The wire format is the same as any gRPC client's: a
// HEADERS frame (HPACK, same fields as gRPC-Go sends), a DATA frame with
// the length-prefixed message and END_STREAM, and the answer read as
// response headers, one message and trailers with grpc-status.
//
// Calls are asynchronous: done runs on the connection's reader goroutine
// and must not block. Writes are coalesced:
// calls append frames to a buffer that one goroutine writes out.
type h2conn struct {
	conn net.Conn
	rd   *http2.Framer

	mu         sync.Mutex
	wr         *http2.Framer // writes into wbuf
	wbuf       *bytes.Buffer
	spare      *bytes.Buffer
	flush      chan struct{}
	sendWindow int64 // connection-level flow control for our DATA
	windowFree *sync.Cond
	nextID     uint32
	// pending[i] is the call on stream firstID+2i, nil once answered:
	// stream ids grow by two and answers come back in about the order
	// the calls left, so a window over the ids beats a map of 40,000.
	pending    []*h2call
	firstID    uint32
	inFlight   int
	free       []*h2call // answered calls, for reuse
	err        error     // once set, every new call fails with it
	firstBlock []byte
	block      []byte // header block of every call after the first
	msg        []byte // scratch: the length-prefixed message
	unacked    int    // bytes received since our last WINDOW_UPDATE
	connWindow int    // our receive window
	closed     chan struct{}
}

type h2call struct {
	data    []byte
	headers bool // response headers seen
	done    func(msg []byte, err error)
}

// Flow control: we open a large window at once so that the server never
// waits for us, and give it back in large steps.
const (
	h2StreamWindow = 16 << 20
	// h2MaxResponse bounds one answer (the server's own limit is 1 MiB).
	h2MaxResponse = 4 << 20
)

// defaultH2ConnWindow is a connection's receive window unless its
// h2Dial says otherwise.
const defaultH2ConnWindow = 1 << 30

// h2Dial is how a connection is made: over TLS when TLS is set (ALPN "h2"
// only, as gRPC clients offer), plaintext otherwise, with a receive
// window of ConnWindow bytes (0: defaultH2ConnWindow).
type h2Dial struct {
	TLS        *tls.Config
	ConnWindow int
}

// dialH2 opens a connection to addr for calls to method (e.g.
// "/tempel.v1.Signer/Sign"), with authorization sent on every call if set.
func dialH2(ctx context.Context, addr, method, authorization string) (*h2conn, error) {
	return dialH2Over(ctx, addr, h2Dial{}, method, authorization)
}

// dialH2Over is dialH2 made as d says.
func dialH2Over(ctx context.Context, addr string, d h2Dial, method, authorization string) (*h2conn, error) {
	tc := d.TLS
	window := d.ConnWindow
	if window <= 0 {
		window = defaultH2ConnWindow
	}
	var nd net.Dialer
	c, err := nd.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if tc != nil {
		if c, err = h2TLS(ctx, c, addr, tc); err != nil {
			return nil, err
		}
		scheme = "https"
	}
	h := &h2conn{conn: c, flush: make(chan struct{}, 1), sendWindow: 65535, nextID: 1,
		firstID: 1, connWindow: window, wbuf: new(bytes.Buffer), spare: new(bytes.Buffer), closed: make(chan struct{})}
	h.windowFree = sync.NewCond(&h.mu)
	h.wr = http2.NewFramer(bufferWriter{h}, nil)
	h.rd = http2.NewFramer(io.Discard, bufio.NewReaderSize(c, 64<<10))
	h.rd.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	h.rd.MaxHeaderListSize = 64 << 10
	h.firstBlock, h.block = headerBlocks(scheme, addr, method, authorization)

	h.wbuf.WriteString(http2.ClientPreface)
	h.wr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: h2StreamWindow},
		http2.Setting{ID: http2.SettingEnablePush, Val: 0})
	h.wr.WriteWindowUpdate(0, uint32(window-65535))
	if _, err := c.Write(h.wbuf.Bytes()); err != nil {
		c.Close()
		return nil, err
	}
	h.wbuf.Reset()
	go h.writeLoop()
	go h.readLoop()
	return h, nil
}

// h2TLS runs the TLS handshake of a gRPC client on c.
func h2TLS(ctx context.Context, c net.Conn, addr string, tc *tls.Config) (net.Conn, error) {
	tc = tc.Clone()
	tc.NextProtos = []string{"h2"}
	if tc.ServerName == "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			tc.ServerName = host
		}
	}
	tlc := tls.Client(c, tc)
	if err := tlc.HandshakeContext(ctx); err != nil {
		c.Close()
		return nil, err
	}
	if p := tlc.ConnectionState().NegotiatedProtocol; p != "h2" {
		tlc.Close()
		return nil, fmt.Errorf("bench: %s negotiated %q, not h2", addr, p)
	}
	return tlc, nil
}

// headerBlocks encodes the request headers twice with one HPACK encoder:
// the first block adds the fields to the server's dynamic table, the
// second (sent on every later call) only refers to them, as a long-lived
// gRPC-Go connection does, so the server decodes them as cheaply.
func headerBlocks(scheme, authority, method, authorization string) (first, rest []byte) {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	fields := []hpack.HeaderField{
		{Name: ":method", Value: "POST"},
		{Name: ":scheme", Value: scheme},
		{Name: ":path", Value: method},
		{Name: ":authority", Value: authority},
		{Name: "content-type", Value: "application/grpc"},
		{Name: "user-agent", Value: "tempel-bench"},
		{Name: "te", Value: "trailers"},
	}
	if authorization != "" {
		fields = append(fields, hpack.HeaderField{Name: "authorization", Value: authorization})
	}
	for range 2 {
		for _, f := range fields {
			enc.WriteField(f)
		}
		if first == nil {
			first = bytes.Clone(buf.Bytes())
			buf.Reset()
		}
	}
	return first, bytes.Clone(buf.Bytes())
}

// bufferWriter lets the writing Framer append to the current buffer,
// which writeLoop swaps out; used with h.mu held.
type bufferWriter struct{ h *h2conn }

func (w bufferWriter) Write(p []byte) (int, error) { return w.h.wbuf.Write(p) }

// call sends one request; done gets the answer message (valid only
// until done returns) or the error. It waits while the server's
// flow-control window is used up, so done must not call it.
func (h *h2conn) call(msg []byte, done func(msg []byte, err error)) {
	h.mu.Lock()
	for h.err == nil && h.sendWindow < int64(5+len(msg)) {
		h.windowFree.Wait()
	}
	if h.err != nil {
		err := h.err
		h.mu.Unlock()
		done(nil, err)
		return
	}
	id := h.nextID
	if id > 1<<31-1 {
		h.mu.Unlock()
		done(nil, errors.New("http2: stream ids used up on this connection"))
		return
	}
	h.nextID += 2
	block := h.block
	if id == 1 {
		block = h.firstBlock
	}
	h.wr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndHeaders: true})
	h.msg = append(h.msg[:0], 0, 0, 0, 0, 0)
	binary.BigEndian.PutUint32(h.msg[1:], uint32(len(msg)))
	h.msg = append(h.msg, msg...)
	h.wr.WriteData(id, true, h.msg)
	h.sendWindow -= int64(len(h.msg))
	c := h.newCall()
	c.done = done
	h.pending = append(h.pending, c)
	h.inFlight++
	h.mu.Unlock()
	h.kick()
}

// kick tells writeLoop there is something to write.
func (h *h2conn) kick() {
	select {
	case h.flush <- struct{}{}:
	default:
	}
}

// writeLoop writes out whatever the calls have framed since its last
// write, so that calls arriving together share a write.
func (h *h2conn) writeLoop() {
	for {
		select {
		case <-h.flush:
		case <-h.closed:
			return
		}
		h.mu.Lock()
		h.wbuf, h.spare = h.spare, h.wbuf
		h.mu.Unlock()
		if h.spare.Len() == 0 {
			continue
		}
		_, err := h.conn.Write(h.spare.Bytes())
		h.spare.Reset()
		if err != nil {
			h.fail(fmt.Errorf("http2 write: %w", err))
			return
		}
	}
}

// control queues a control frame (settings or ping acknowledgement,
// window update) for writeLoop.
func (h *h2conn) control(write func(*http2.Framer) error) {
	h.mu.Lock()
	write(h.wr)
	h.mu.Unlock()
	h.kick()
}

func (h *h2conn) readLoop() {
	for {
		f, err := h.rd.ReadFrame()
		if err != nil {
			select {
			case <-h.closed:
				err = errors.New("connection closed")
			default:
			}
			h.fail(fmt.Errorf("http2 read: %w", err))
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.control(func(w *http2.Framer) error { return w.WriteSettingsAck() })
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				data := f.Data
				h.control(func(w *http2.Framer) error { return w.WritePing(true, data) })
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID == 0 {
				h.mu.Lock()
				h.sendWindow += int64(f.Increment)
				h.windowFree.Broadcast()
				h.mu.Unlock()
			}
		case *http2.GoAwayFrame:
			h.goAway(f.LastStreamID, fmt.Errorf("server closed the connection (GOAWAY %v)", f.ErrCode))
		case *http2.RSTStreamFrame:
			h.finish(f.StreamID, nil, fmt.Errorf("stream reset by the server: %v", f.ErrCode))
		case *http2.MetaHeadersFrame:
			h.headers(f)
		case *http2.DataFrame:
			h.data(f)
		}
	}
}

// headers handles response headers and trailers (or a trailers-only
// answer, which is how gRPC reports an error before any message).
func (h *h2conn) headers(f *http2.MetaHeadersFrame) {
	c := h.lookup(f.StreamID)
	if c == nil {
		return
	}
	if !c.headers && !f.StreamEnded() {
		c.headers = true
		if st := f.PseudoValue("status"); st != "200" {
			h.finish(f.StreamID, nil, fmt.Errorf("http status %q", st))
		}
		return
	}
	if !f.StreamEnded() {
		h.finish(f.StreamID, nil, errors.New("trailers without END_STREAM"))
		return
	}
	code := f.PseudoValue("status")
	if c.headers || code == "200" {
		code = ""
	}
	grpcStatus, grpcMessage := "", ""
	for _, hf := range f.RegularFields() {
		switch hf.Name {
		case "grpc-status":
			grpcStatus = hf.Value
		case "grpc-message":
			grpcMessage, _ = url.PathUnescape(hf.Value)
		}
	}
	switch {
	case code != "":
		h.finish(f.StreamID, nil, fmt.Errorf("http status %q", code))
	case grpcStatus != "0":
		n, _ := strconv.Atoi(grpcStatus)
		err := fmt.Errorf("grpc status %d: %s", n, grpcMessage)
		if codes.Code(n) == codes.ResourceExhausted {
			err = &refusedError{err.Error()}
		}
		h.finish(f.StreamID, nil, err)
	case len(c.data) < 5 || c.data[0] != 0 || int(binary.BigEndian.Uint32(c.data[1:5])) != len(c.data)-5:
		h.finish(f.StreamID, nil, fmt.Errorf("answer is not one uncompressed gRPC message (%d bytes)", len(c.data)))
	default:
		h.finish(f.StreamID, c.data[5:], nil)
	}
}

func (h *h2conn) data(f *http2.DataFrame) {
	h.unacked += int(f.Length)
	if h.unacked >= h.connWindow/2 {
		n := uint32(h.unacked)
		h.unacked = 0
		h.control(func(w *http2.Framer) error { return w.WriteWindowUpdate(0, n) })
	}
	c := h.lookup(f.StreamID)
	if c == nil {
		return
	}
	if len(c.data)+len(f.Data()) > h2MaxResponse {
		h.finish(f.StreamID, nil, fmt.Errorf("answer larger than %d bytes", h2MaxResponse))
		return
	}
	c.data = append(c.data, f.Data()...)
	if f.StreamEnded() {
		h.finish(f.StreamID, nil, errors.New("answer ended without trailers"))
	}
}

// lookup returns the pending call on stream id, or nil.
func (h *h2conn) lookup(id uint32) *h2call {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.lookupLocked(id)
}

func (h *h2conn) lookupLocked(id uint32) *h2call {
	if id < h.firstID || id%2 == 0 {
		return nil
	}
	if i := int((id - h.firstID) / 2); i < len(h.pending) {
		return h.pending[i]
	}
	return nil
}

// finish completes a call once: whoever takes it out of pending.
func (h *h2conn) finish(id uint32, msg []byte, err error) {
	h.mu.Lock()
	c := h.lookupLocked(id)
	if c != nil {
		h.pending[(id-h.firstID)/2] = nil
		h.inFlight--
		for len(h.pending) > 0 && h.pending[0] == nil {
			h.pending = h.pending[1:]
			h.firstID += 2
		}
	}
	h.mu.Unlock()
	if c != nil {
		c.done(msg, err)
		h.mu.Lock()
		h.free = append(h.free, c)
		h.mu.Unlock()
	}
}

// newCall takes a call from the free list, keeping its answer buffer:
// at 40,000 calls a second, allocating them showed in the generator's
// profile. A call is reused only after its done has returned, which is
// why done must not keep msg.
func (h *h2conn) newCall() *h2call {
	n := len(h.free)
	if n == 0 {
		return new(h2call)
	}
	c := h.free[n-1]
	h.free = h.free[:n-1]
	*c = h2call{data: c.data[:0]}
	return c
}

// goAway fails the calls the server will not answer and every later one.
func (h *h2conn) goAway(last uint32, err error) {
	h.mu.Lock()
	if h.err == nil {
		h.err = err
	}
	h.windowFree.Broadcast()
	var ids []uint32
	for i, c := range h.pending {
		if id := h.firstID + 2*uint32(i); c != nil && id > last {
			ids = append(ids, id)
		}
	}
	h.mu.Unlock()
	for _, id := range ids {
		h.finish(id, nil, err)
	}
}

// fail ends the connection: every pending and later call fails with err.
func (h *h2conn) fail(err error) {
	h.goAway(0, err)
	h.close()
}

func (h *h2conn) close() {
	h.mu.Lock()
	select {
	case <-h.closed:
	default:
		close(h.closed)
		if h.err == nil {
			h.err = errors.New("connection closed")
		}
		h.windowFree.Broadcast()
	}
	h.mu.Unlock()
	h.conn.Close()
}

// pendingCalls is the number of calls sent and not yet answered.
func (h *h2conn) pendingCalls() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inFlight
}

// waitIdle waits until no call is pending or the connection is closed.
func (h *h2conn) waitIdle() {
	for h.pendingCalls() > 0 {
		select {
		case <-h.closed:
			return
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// broken reports whether the connection has failed or is going away.
func (h *h2conn) broken() bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.err != nil
}
