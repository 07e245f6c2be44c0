package raftnode

import (
	"errors"
	"fmt"
)

var (
	// ErrStopped: the member stopped (Stop, or a fatal error: see Err).
	ErrStopped = errors.New("raftnode: member stopped")
	// ErrNotLeader: proposals go to the leader; the error is a
	// *NotLeaderError naming it when it is known.
	ErrNotLeader = errors.New("raftnode: not the leader")
	// ErrBusy: a bounded queue is full; the request is refused at once.
	ErrBusy = errors.New("raftnode: queue full")
	// ErrDropped: raft dropped the proposal (leadership is changing, or
	// the leader holds too much uncommitted); retry.
	ErrDropped = errors.New("raftnode: proposal dropped by raft, retry")
	// ErrTooLarge: the proposal is larger than MaxProposalBytes.
	ErrTooLarge = errors.New("raftnode: proposal too large")
	// ErrWrongMember: a raft message addressed to another member.
	ErrWrongMember = errors.New("raftnode: message not addressed to this member")
	// ErrRemoved: this member was removed from the cluster.
	ErrRemoved = errors.New("raftnode: this member was removed from the cluster")
)

// NotLeaderError is returned for a proposal to a member that is not the
// leader. Leader is 0 and Addr empty when no leader is known (an
// election is under way). It matches ErrNotLeader with errors.Is.
type NotLeaderError struct {
	Leader uint64
	Addr   string
}

func (e *NotLeaderError) Error() string {
	if e.Leader == 0 {
		return "raftnode: not the leader, and no leader is known (election under way)"
	}
	return fmt.Sprintf("raftnode: not the leader; the leader is member %d at %s", e.Leader, e.Addr)
}

// Is makes errors.Is(err, ErrNotLeader) hold.
func (e *NotLeaderError) Is(target error) bool { return target == ErrNotLeader }
