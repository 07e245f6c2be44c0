package bench

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestH1Pool: answers with a length, chunked (written in pieces) and
// with Connection: close arrive whole; concurrent posts share at most
// max connections; a caller whose context ends while waiting gives up.
func TestH1Pool(t *testing.T) {
	var conns, active, peak atomic.Int64
	block := make(chan struct{})
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.Header.Get("Content-Type") != "application/timestamp-query" || r.URL.Path != "/tsa" {
			http.Error(w, "bad request", http.StatusBadRequest)
			return
		}
		switch string(body[:1]) {
		case "c": // chunked, in pieces
			for i := range 5 {
				w.Write(bytes.Repeat([]byte{byte('0' + i)}, 1000))
				w.(http.Flusher).Flush()
			}
		case "x":
			w.Header().Set("Connection", "close")
			w.Write([]byte("closing"))
		case "b":
			n := active.Add(1)
			for p := peak.Load(); n > p && !peak.CompareAndSwap(p, n); p = peak.Load() {
			}
			<-block
			active.Add(-1)
			w.Write(body)
		default:
			w.WriteHeader(http.StatusTeapot)
			w.Write(body)
		}
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	addr := srv.Listener.Addr().String()
	p := newH1Pool(addr, nil, 2, "/tsa", "", "", 4)
	defer p.close()
	ctx := context.Background()

	status, resp, err := p.post(ctx, []byte("c..."))
	want := []byte{}
	for i := range 5 {
		want = append(want, bytes.Repeat([]byte{byte('0' + i)}, 1000)...)
	}
	if err != nil || status != 200 || !bytes.Equal(resp, want) {
		t.Fatalf("chunked: %d, %d bytes, %v", status, len(resp), err)
	}
	if status, resp, err = p.post(ctx, []byte("abcd")); err != nil || status != http.StatusTeapot || string(resp) != "abcd" {
		t.Fatalf("with a length: %d %q %v", status, resp, err)
	}
	if status, resp, err = p.post(ctx, []byte("x...")); err != nil || status != 200 || string(resp) != "closing" {
		t.Fatalf("Connection: close: %d %q %v", status, resp, err)
	}
	if _, _, err := p.post(ctx, []byte("toolong")); err == nil {
		t.Fatal("a body of another length was sent")
	}
	if n := conns.Load(); n != 1 {
		t.Fatalf("%d connections for sequential posts (one was closed by the server after its answer), want 1 before it", n)
	}

	// Six posts at once over at most two connections.
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, resp, err := p.post(ctx, []byte("bbbb"))
			if err == nil && string(resp) != "bbbb" {
				err = io.ErrUnexpectedEOF
			}
			errs <- err
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for active.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	// A caller that cannot get a connection gives up with its context.
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	if _, _, err := p.post(short, []byte("bbbb")); err == nil {
		t.Fatal("a post beyond the connections did not wait")
	}
	cancel()
	close(block)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if pk, n := peak.Load(), conns.Load(); pk != 2 || n > 3 {
		t.Fatalf("peak %d requests at once over %d connections in all; want 2 at once, at most 3 connections", pk, n)
	}
}

// post is postTimed without the time.
func (p *h1pool) post(ctx context.Context, body []byte) (int, []byte, error) {
	status, resp, _, err := p.postTimed(ctx, body)
	return status, resp, err
}
