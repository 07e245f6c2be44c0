package cli

import (
	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/node"
)

// clusterFlags make `tempel serve` one member of a replicated calendar.
func clusterFlags(env func(string) []string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.Uint64Flag{Name: "node-id", Usage: "this member's `ID` in --cluster", EnvVars: env("node-id")},
		&ucli.StringFlag{Name: "cluster", Usage: "members of a replicated calendar, `ID=ADDR,...` (each ADDR is that member's --listen address; raft travels on it as gRPC); empty: a single calendar",
			EnvVars: env("cluster")},
	}
}

// clusterConfig reads --node-id and --cluster into cfg.
func clusterConfig(c *ucli.Context, cfg *node.Config) error {
	spec := c.String("cluster")
	if spec == "" {
		if c.IsSet("node-id") {
			return usageErrorf("--node-id needs --cluster ID=ADDR,... naming every member")
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
	cfg.NodeID, cfg.Cluster = id, members
	return nil
}
