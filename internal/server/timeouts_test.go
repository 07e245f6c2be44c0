package server

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
)

// serve runs Serve on loopback with h and opts until the test ends, and
// returns its address.
func serve(t *testing.T, h http.Handler, opts Options) string {
	t.Helper()
	ln := listen(t)
	opts.ShutdownGrace = 5 * time.Second
	if opts.Logger == nil {
		opts.Logger, _ = testLogger()
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, ln, grpc.NewServer(), h, opts) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// closedWithin reads from c until the server closes it and reports how
// long that took; it fails the test after limit.
func closedWithin(t *testing.T, c net.Conn, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	c.SetReadDeadline(start.Add(limit))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after %s", limit)
	}
	return time.Since(start)
}

func TestSlowAnswerOutlivesReadTimeout(t *testing.T) {
	const readTimeout = 200 * time.Millisecond
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		// A handler slower than the read timeout, as a signing wait
		// may be: its client sent everything, so it must not be
		// cancelled.
		select {
		case <-time.After(3 * readTimeout):
			fmt.Fprint(w, "answered")
		case <-r.Context().Done():
			http.Error(w, "cancelled", http.StatusServiceUnavailable)
		}
	}), Options{ReadTimeout: readTimeout})
	hc := &http.Client{Timeout: 10 * time.Second}
	for _, method := range []string{"GET", "POST"} {
		var body io.Reader
		if method == "POST" {
			body = strings.NewReader(`{"hash":"x"}`)
		}
		req, _ := http.NewRequest(method, "http://"+addr+"/", body)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", method, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "answered" {
			t.Fatalf("%s answered %s %q: the read timeout cut a slow answer", method, resp.Status, b)
		}
	}
}

func TestDrippingClientsAreCut(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			http.Error(w, "slow body", http.StatusRequestTimeout)
		}
	}), Options{ReadTimeout: readTimeout})
	for _, tc := range []struct{ name, head string }{
		{"body", "POST /v1/sign HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n"},
		{"headers", "POST /v1/sign HTTP/1.1\r\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, addr)
			if _, err := io.WriteString(c, tc.head); err != nil {
				t.Fatal(err)
			}
			stop := make(chan struct{})
			defer close(stop)
			go func() {
				// One byte every 50 ms: each read makes progress, so
				// only a deadline on the whole request ends it.
				for {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					if _, err := c.Write([]byte("a")); err != nil {
						return
					}
				}
			}()
			took := closedWithin(t, c, 10*readTimeout)
			if took < readTimeout/2 {
				t.Fatalf("closed after %s, before the read timeout", took)
			}
		})
	}
}

func TestIdleKeepAliveClosed(t *testing.T) {
	const idle = 300 * time.Millisecond
	addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "ok") }),
		Options{IdleTimeout: idle})
	c := dial(t, addr)
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.Close {
		t.Fatal("the server did not keep the connection alive")
	}
	c.SetReadDeadline(time.Now().Add(20 * idle))
	if _, err := br.ReadByte(); err != io.EOF {
		t.Fatalf("idle keep-alive connection: %v, want closed by the server", err)
	}
}

// TestSilentClientCutAtReadTimeout: a client that connects and sends
// nothing holds its counted connection for the read timeout when that is
// shorter than the first-bytes (or TLS handshake) bound, not 10 s.
func TestSilentClientCutAtReadTimeout(t *testing.T) {
	const readTimeout = 300 * time.Millisecond
	ca := newTestCA(t)
	for _, tc := range []struct {
		name string
		tls  *tls.Config
	}{
		{"plaintext", nil},
		{"tls", &tls.Config{Certificates: []tls.Certificate{ca.issue(t, "server", x509.ExtKeyUsageServerAuth)}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			addr := serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}),
				Options{ReadTimeout: readTimeout, TLS: tc.tls})
			c := dial(t, addr)
			if took := closedWithin(t, c, 5*time.Second); took < readTimeout/2 {
				t.Fatalf("closed after %s, before the read timeout", took)
			}
		})
	}
}
