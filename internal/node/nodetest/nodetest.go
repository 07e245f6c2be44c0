// Package nodetest starts Tempel nodes on loopback for the tests of other
// packages (the SDK, the load generator, the examples): one way to run a
// node in a test and stop it cleanly, instead of a copy in each.
package nodetest

import (
	"context"
	"errors"
	"net"
	"sync"
	"testing"

	"github.com/tempel-ksi/tempel/internal/node"
)

// Start runs a node with cfg on a free loopback port and returns its
// address (HOST:PORT). cfg.PublicURL is set to the node's plain HTTP URL
// when empty. stop ends the node and reports its errors to tb; it may be
// called mid-test, and is called (again, harmlessly) at cleanup.
func Start(tb testing.TB, cfg node.Config) (addr string, stop func()) {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	if cfg.PublicURL == "" {
		cfg.PublicURL = "http://" + ln.Addr().String()
	}
	n, err := node.New(cfg)
	if err != nil {
		ln.Close()
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := errors.Join(<-done, n.Close()); err != nil {
				tb.Errorf("node %s: %v", cfg.Name, err)
			}
		})
	}
	tb.Cleanup(stop)
	return ln.Addr().String(), stop
}
