package cli

import (
	"maps"
	"net"
	"slices"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/node"
)

// clusterFlags make `tempel serve` one member of a replicated calendar.
func clusterFlags(env func(string) []string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.Uint64Flag{Name: "node-id", Usage: "this member's `ID` in --cluster", EnvVars: env("node-id")},
		&ucli.StringFlag{Name: "cluster", Usage: "members of a replicated calendar, `ID=ADDR,...` (each ADDR is that member's --listen address; raft travels on it as gRPC); empty: a single calendar",
			EnvVars: env("cluster")},
		&ucli.BoolFlag{Name: "join", Usage: "join a running cluster that added this member ('tempel cluster add ID ADDR'), on an empty data directory, instead of bootstrapping a new one",
			EnvVars: env("join")},
		&ucli.StringFlag{Name: "cluster-login", Value: node.DefaultClusterLogin, Usage: "`LOGIN` members use with each other (raft and forwarded rounds); with --users it must be in every member's users file", EnvVars: env("cluster-login")},
		&ucli.StringFlag{Name: "cluster-key", Usage: "`KEY` of --cluster-login (prefer TEMPEL_CLUSTER_KEY: command lines are visible in ps); needed with --users", EnvVars: env("cluster-key")},
		&ucli.StringFlag{Name: "cluster-admin", Value: node.DefaultClusterAdmin, Usage: "`LOGIN` (in --users) allowed to add and remove members", EnvVars: env("cluster-admin")},
		&ucli.Uint64Flag{Name: "raft-snapshot-every", Value: node.ClusterSnapshotEvery, Usage: "snapshot the calendar and compact the raft log every `N` applied entries (about one a second)", EnvVars: env("raft-snapshot-every")},
		&ucli.Uint64Flag{Name: "raft-keep-entries", Value: node.ClusterKeepEntries, Usage: "raft entries kept behind each snapshot: a member behind by fewer catches up from the log, by more it fetches the calendar from a peer", EnvVars: env("raft-keep-entries")},
	}
}

// clusterConfig reads --node-id and --cluster into cfg.
func clusterConfig(c *ucli.Context, cfg *node.Config) error {
	spec := c.String("cluster")
	if spec == "" {
		if c.IsSet("node-id") || c.Bool("join") {
			return usageErrorf("--node-id and --join need --cluster ID=ADDR,... naming every member")
		}
		return nil
	}
	members, err := node.ParseCluster(spec)
	if err != nil {
		return usageErrorf("--cluster: %v", err)
	}
	id := c.Uint64("node-id")
	if _, ok := members[id]; !ok {
		return usageErrorf("--node-id %d is not a member of --cluster %s", id, spec)
	}
	if cfg.Role == node.RoleAggregator {
		return usageErrorf("--cluster replicates the calendar: it needs --role all or calendar")
	}
	cfg.NodeID, cfg.Cluster, cfg.Join, cfg.ClusterAdmin = id, members, c.Bool("join"), c.String("cluster-admin")
	cfg.ClusterLogin, cfg.ClusterKey = c.String("cluster-login"), c.String("cluster-key")
	cfg.RaftSnapshotEvery, cfg.RaftKeepEntries = c.Uint64("raft-snapshot-every"), c.Uint64("raft-keep-entries")
	if cfg.RaftSnapshotEvery == 0 || cfg.RaftKeepEntries >= cfg.RaftSnapshotEvery {
		return usageErrorf("--raft-keep-entries %d must be below --raft-snapshot-every %d (and that above 0)", cfg.RaftKeepEntries, cfg.RaftSnapshotEvery)
	}
	if cfg.UsersFile == "" {
		// Without users anyone who reaches a member could send it raft
		// traffic or change the members: development on loopback only.
		for _, mid := range slices.Sorted(maps.Keys(members)) {
			if addr := members[mid]; !loopbackAddr(addr) {
				return usageErrorf("--cluster member %d at %s is not on loopback: a cluster off one machine needs --users (and --cluster-key), or anyone reaching a member could send it raft traffic or change the members", mid, addr)
			}
		}
	}
	if cfg.UsersFile != "" && cfg.ClusterKey == "" {
		return usageErrorf("--cluster with --users needs --cluster-key (TEMPEL_CLUSTER_KEY): the key of --cluster-login %s in every member's users file", cfg.ClusterLogin)
	}
	return nil
}

// loopbackAddr reports whether HOST:PORT names this machine only.
func loopbackAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}
