package node

import (
	"time"

	"google.golang.org/grpc/keepalive"

	"github.com/tempel-ksi/tempel/internal/server"
)

// Keepalive of gRPC connections: the server pings a connection that has
// been silent for keepaliveTime and closes it when no answer comes within
// keepaliveTimeout, so a peer that vanished (a crashed client, a cut
// link) does not hold its calls and streams for ever.
const (
	keepaliveTime    = time.Minute
	keepaliveTimeout = 20 * time.Second
)

// keepalivePolicy lets clients ping as often as every 10 s (gRPC's own
// floor for client keepalive), with or without calls in progress: pings
// do not count as activity, so they cannot keep an idle connection open.
// Cluster members ping each other that often (raftnode.KeepaliveEnforcement).
var keepalivePolicy = keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}

// withConnDefaults fills the connection limits left at zero.
func withConnDefaults(cfg Config) Config {
	if cfg.MaxConns == 0 {
		cfg.MaxConns = server.DefaultMaxConns
	}
	if cfg.ReadTimeout == 0 {
		cfg.ReadTimeout = server.DefaultReadTimeout
	}
	if cfg.WriteTimeout == 0 {
		cfg.WriteTimeout = server.DefaultWriteTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = server.DefaultIdleTimeout
	}
	return cfg
}

// keepaliveParams closes gRPC connections with no call in progress for
// the idle timeout, and probes silent ones.
func (n *Node) keepaliveParams() keepalive.ServerParameters {
	return keepalive.ServerParameters{MaxConnectionIdle: n.cfg.IdleTimeout, Time: keepaliveTime, Timeout: keepaliveTimeout}
}

// serveOptions are the server options of Run.
func (n *Node) serveOptions() server.Options {
	return server.Options{ShutdownGrace: 10 * time.Second, Logger: n.log, MaxConns: n.cfg.MaxConns,
		ReadTimeout: n.cfg.ReadTimeout, WriteTimeout: n.cfg.WriteTimeout, IdleTimeout: n.cfg.IdleTimeout, Metrics: n.reg, TLS: n.tls,
		Conns: n.conns}
}
