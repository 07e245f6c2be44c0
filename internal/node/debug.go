package node

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// DefaultDebugListen is where --pprof serves profiles unless --debug-listen
// says otherwise.
const DefaultDebugListen = "127.0.0.1:6060"

// checkDebugListen refuses a debug address that is not loopback. Profiles
// and goroutine dumps show memory contents and take no credentials, so
// they are never served to the network: reach them through an SSH tunnel
// (ssh -L 6060:127.0.0.1:6060 HOST) or kubectl port-forward, which both
// arrive on loopback.
func checkDebugListen(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("node: --debug-listen %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("node: --debug-listen %s: the debug listener serves profiles without credentials, so only a loopback address is accepted (e.g. 127.0.0.1:6060); reach it with ssh -L or kubectl port-forward", addr)
}

// openDebug opens the debug listener when profiling is on.
func (n *Node) openDebug() error {
	if !n.cfg.Pprof {
		return nil
	}
	addr := n.cfg.DebugListen
	if addr == "" {
		addr = DefaultDebugListen
	}
	if err := checkDebugListen(addr); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("node: debug listener: %w", err)
	}
	n.debugLn = ln
	n.log.Info("serving pprof and metrics on the debug listener", "addr", ln.Addr().String())
	return nil
}

// DebugAddr is the debug listener's address, "" without --pprof.
func (n *Node) DebugAddr() string {
	if n.debugLn == nil {
		return ""
	}
	return n.debugLn.Addr().String()
}

// serveDebug serves pprof and a copy of /metrics on the debug listener
// until the returned function is called. The public listener has neither
// pprof nor unauthenticated metrics.
func (n *Node) serveDebug() (stop func()) {
	if n.debugLn == nil {
		return func() {}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := hs.Serve(n.debugLn); err != nil && !errors.Is(err, http.ErrServerClosed) && !errors.Is(err, net.ErrClosed) {
			n.log.Warn("debug listener stopped", "err", err)
		}
	}()
	return func() {
		hs.Close()
		<-done
	}
}
