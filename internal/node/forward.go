package node

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"

	"google.golang.org/grpc"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/ksi"
)

// clusterCalendar is a cluster member's calendar as its own aggregator's
// upstream (role all). While the member leads, round roots go to its
// calendar as on a single node; on a follower they are forwarded to the
// leader's Signer over gRPC, as a child aggregator's would be, so every
// member signs for its clients whichever member leads. A signature
// forwarded so has one more aggregation level (the leader's round).
type clusterCalendar struct {
	local localCalendar
	log   *raftLog
	dial  []grpc.DialOption

	mu   sync.Mutex
	addr string // the leader the connection goes to
	conn *grpc.ClientConn
	up   *aggregator.GRPCUpstream
}

func (c *clusterCalendar) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	if c.log.Leading() {
		sig, err := c.local.Sign(ctx, root, level)
		if !errors.Is(err, calendar.ErrNotLeader) {
			return sig, err
		}
	}
	return c.forward(ctx, root, level)
}

// Reserve holds a place in this member's second while it leads; a
// follower's rounds are forwarded when they are signed.
func (c *clusterCalendar) Reserve() (aggregator.Upstream, func()) {
	if !c.log.Leading() {
		return c, func() {}
	}
	up, release := c.local.Reserve()
	return aggregator.UpstreamFunc(func(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
		sig, err := up.Sign(ctx, root, level)
		if errors.Is(err, calendar.ErrNotLeader) {
			return c.forward(ctx, root, level) // the lead moved while the round was built
		}
		return sig, err
	}), release
}

func (c *clusterCalendar) forward(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	up, err := c.leaderUpstream()
	if err != nil {
		return nil, err
	}
	return up.Sign(ctx, root, level)
}

// leaderUpstream returns the Signer of the current leader, dialling it
// when the lead has moved.
func (c *clusterCalendar) leaderUpstream() (*aggregator.GRPCUpstream, error) {
	if c.log.n == nil {
		return nil, fmt.Errorf("%w: the cluster has not started", calendar.ErrNotLeader)
	}
	st := c.log.n.Status()
	addr := st.LeaderAddr
	switch {
	case st.Leader == st.ID:
		// Leading but not yet answering (applying the log, or no
		// quorum): forwarding would come back here.
		return nil, fmt.Errorf("%w: this member leads but has not caught up or lost its quorum", calendar.ErrNotLeader)
	case addr == "":
		return nil, fmt.Errorf("%w: no leader (election in progress or no quorum)", calendar.ErrNotLeader)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.addr == addr {
		return c.up, nil
	}
	conn, err := grpc.NewClient(strings.TrimPrefix(addr, "http://"), c.dial...)
	if err != nil {
		return nil, fmt.Errorf("cluster: forward to the leader at %s: %w", addr, err)
	}
	if c.conn != nil {
		c.conn.Close()
	}
	c.addr, c.conn, c.up = addr, conn, aggregator.NewGRPCUpstream(conn, "", "")
	return c.up, nil
}

func (c *clusterCalendar) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.conn != nil {
		return c.conn.Close()
	}
	return nil
}

// calendarUpstream is the aggregator's upstream in role all: the
// in-process calendar, through the leader when the calendar is a cluster
// member.
func (n *Node) calendarUpstream() (aggregator.Upstream, error) {
	local := localCalendar{cal: n.cal, name: n.cfg.Name}
	if n.raftLog == nil {
		return local, nil
	}
	dial, err := n.peerDial()
	if err != nil {
		return nil, err
	}
	// The dial options carry the member login's credentials.
	c := &clusterCalendar{local: local, log: n.raftLog, dial: dial}
	n.closers = append(n.closers, c.close)
	return c, nil
}
