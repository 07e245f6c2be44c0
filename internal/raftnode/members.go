package raftnode

import (
	"context"
	"fmt"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// AddMember adds member id at addr as a learner: it receives the log
// (or a snapshot) but does not vote, so adding it does not change the
// quorum while it catches up. Promote it with PromoteMember. The
// member is started with Config.Join on an empty directory. AddMember
// returns once the change is applied on this member (the leader), or
// with ctx's error; raft allows one pending change at a time, so a
// change proposed while another is pending is dropped and this waits
// until ctx ends.
func (n *Node) AddMember(ctx context.Context, id uint64, addr string) error {
	if id == 0 || addr == "" {
		return fmt.Errorf("raftnode: add member: id %d and address %q", id, addr)
	}
	// Adding a voter as a learner would demote it.
	if _, ok := n.Status().Members[id]; ok {
		return fmt.Errorf("raftnode: add member: %d is already a member", id)
	}
	return n.changeConf(ctx, pb.ConfChangeType_ConfChangeAddLearnerNode, id, addr, func(s Status) bool {
		m, ok := s.Members[id]
		return ok && m.Learner
	})
}

// PromoteMember makes learner id a voter. Promote a learner once it has
// caught up (its Match in the leader's Status near the commit index):
// a voter far behind weakens the quorum until it catches up.
func (n *Node) PromoteMember(ctx context.Context, id uint64) error {
	// Only a learner: promoting an unknown id would add a voter with
	// no learner phase.
	if m, ok := n.Status().Members[id]; !ok || !m.Learner {
		return fmt.Errorf("raftnode: promote member: %d is not a learner", id)
	}
	return n.changeConf(ctx, pb.ConfChangeType_ConfChangeAddNode, id, n.peerAddr(id), func(s Status) bool {
		m, ok := s.Members[id]
		return ok && !m.Learner
	})
}

// RemoveMember removes member id from the cluster. A member removed
// stops with ErrRemoved when it applies its removal.
func (n *Node) RemoveMember(ctx context.Context, id uint64) error {
	return n.changeConf(ctx, pb.ConfChangeType_ConfChangeRemoveNode, id, "", func(s Status) bool {
		_, ok := s.Members[id]
		return !ok
	})
}

func (n *Node) changeConf(ctx context.Context, typ pb.ConfChangeType, id uint64, addr string, done func(Status) bool) error {
	cc := &pb.ConfChangeV2{
		Changes: []*pb.ConfChangeSingle{{Type: typ.Enum(), NodeId: new(id)}},
		Context: []byte(addr),
	}
	if err := n.submit(ctx, proposal{cc: cc}); err != nil {
		return err
	}
	// Applied changes show in the leader's Status; poll it, bounded
	// by ctx.
	tick := time.NewTicker(n.cfg.TickInterval / 4)
	defer tick.Stop()
	for {
		s := n.Status()
		if !s.IsLeader {
			return &NotLeaderError{Leader: s.Leader, Addr: s.LeaderAddr}
		}
		if done(s) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("raftnode: membership change not applied: %w", ctx.Err())
		case <-n.done:
			return ErrStopped
		case <-tick.C:
		}
	}
}
