package raftnode

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// Defaults of the Config fields left zero. Sizes are in bytes.
const (
	// DefaultTickInterval is one raft tick: with DefaultElectionTick a
	// follower campaigns after 1 to 2 s without a leader, and a leader
	// without a quorum steps down after 1 s (CheckQuorum).
	DefaultTickInterval = 100 * time.Millisecond
	DefaultElectionTick = 10
	// DefaultHeartbeatTick sends a heartbeat every tick.
	DefaultHeartbeatTick = 1
	// DefaultMaxMessageBytes bounds one raft message on the wire, both
	// ways: the receiver refuses a larger one (ResourceExhausted, the
	// stream ends) and the sender drops it and reports it. It is the
	// node's gRPC server's MaxRecvMsgSize (internal/node, 1 MiB), on
	// which the raft service is registered: raise both together.
	DefaultMaxMessageBytes = 1 << 20
	// DefaultMaxSizePerMsg bounds the entries of one append message
	// (raft puts at least one entry in each, whatever its size).
	DefaultMaxSizePerMsg = 256 << 10
	// DefaultMaxInflightMsgs bounds the append messages sent to one
	// follower and not yet acknowledged: with DefaultMaxSizePerMsg, at
	// most 16 MiB of entries in flight per follower (the gRPC
	// transport's per-peer queue holds twice that, DefaultPeerQueueBytes).
	DefaultMaxInflightMsgs = 64
	// DefaultMaxUncommittedEntriesSize bounds what a leader holds in its
	// log uncommitted; proposals past it are refused (ErrDropped).
	DefaultMaxUncommittedEntriesSize = 64 << 20
	// DefaultMaxProposalBytes bounds the data of one proposal, so that
	// an append message (DefaultMaxSizePerMsg of entries, or one entry
	// of this size) always fits DefaultMaxMessageBytes.
	DefaultMaxProposalBytes = 512 << 10
	// DefaultProposalQueue is how many proposals may wait for the Ready
	// loop; one more is refused at once with ErrBusy.
	DefaultProposalQueue = 1024
	// DefaultReceiveQueue is how many received raft messages may wait
	// for the Ready loop; more are dropped (raft retransmits).
	DefaultReceiveQueue = 4096
	// DefaultSnapshotEvery is how many entries are applied between two
	// snapshots of the state machine (each followed by a compaction).
	DefaultSnapshotEvery = 10000
	// DefaultKeepEntries is how many applied entries a compaction keeps
	// behind the snapshot, so that a follower briefly behind catches
	// up from the log rather than from a snapshot.
	DefaultKeepEntries = 5000
)

// Config describes one member. Zero fields take the defaults above.
// PreVote and CheckQuorum are always on: a member coming back from a
// partition does not disrupt the current leader, and a leader that lost
// its quorum steps down after an election timeout.
type Config struct {
	// ID is this member's raft id (not 0).
	ID uint64
	// Peers maps every member's id to its address, this member
	// included. On an empty Dir, the members bootstrap the cluster
	// with exactly these ids (unless Join is set); on a restart the
	// membership comes from the log and Peers only gives addresses.
	Peers map[uint64]string
	// Join starts a member on an empty Dir without bootstrapping: it
	// waits for the leader, which added it with AddMember, to send it
	// the log or a snapshot.
	Join bool
	// Dir is the raft log's directory (internal/raftlog).
	Dir string

	// TickInterval is one raft tick; ElectionTick and HeartbeatTick
	// count ticks (raft.Config).
	TickInterval  time.Duration
	ElectionTick  int
	HeartbeatTick int

	// MaxSizePerMsg, MaxInflightMsgs and MaxUncommittedEntriesSize are
	// raft.Config's flow control (see the defaults).
	MaxSizePerMsg             uint64
	MaxInflightMsgs           int
	MaxUncommittedEntriesSize uint64
	// MaxProposalBytes bounds one proposal's data (ErrTooLarge).
	MaxProposalBytes int
	// MaxMessageBytes bounds a raft message received (RegisterServer's
	// handler) and, for the gRPC transport, GRPCOptions.MaxMessageBytes
	// a message sent; snapshot messages included, so the state
	// machine's Snapshot data must stay well below it.
	MaxMessageBytes int
	// ProposalQueue and ReceiveQueue bound the proposals and the
	// received messages waiting for the Ready loop (ErrBusy past them).
	ProposalQueue int
	ReceiveQueue  int
	// Every SnapshotEvery applied entries the state machine is
	// snapshotted and the log compacted, keeping KeepEntries entries.
	SnapshotEvery uint64
	KeepEntries   uint64

	// Logger receives the member's and raft's messages; nil discards.
	Logger *slog.Logger
	// StateMachine applies what the cluster commits.
	StateMachine StateMachine
	// Transport carries raft messages to the other members.
	Transport Transport
}

// withDefaults returns c with zero fields set to the defaults, or an
// error naming the first field that cannot work.
func (c Config) withDefaults() (Config, error) {
	if c.ID == 0 {
		return c, errors.New("raftnode: member id 0 is not allowed")
	}
	if _, ok := c.Peers[c.ID]; !ok && !c.Join {
		return c, fmt.Errorf("raftnode: peers do not include this member (%d)", c.ID)
	}
	for id, addr := range c.Peers {
		if id == 0 || addr == "" {
			return c, fmt.Errorf("raftnode: peer %d with address %q", id, addr)
		}
	}
	if c.Dir == "" {
		return c, errors.New("raftnode: no raft log directory")
	}
	if c.StateMachine == nil || c.Transport == nil {
		return c, errors.New("raftnode: a state machine and a transport are required")
	}
	// The caller may change its map later; the member keeps its own.
	peers := make(map[uint64]string, len(c.Peers))
	for id, addr := range c.Peers {
		peers[id] = addr
	}
	c.Peers = peers
	setDefault(&c.TickInterval, DefaultTickInterval)
	setDefault(&c.ElectionTick, DefaultElectionTick)
	setDefault(&c.HeartbeatTick, DefaultHeartbeatTick)
	setDefault(&c.MaxSizePerMsg, DefaultMaxSizePerMsg)
	setDefault(&c.MaxInflightMsgs, DefaultMaxInflightMsgs)
	setDefault(&c.MaxUncommittedEntriesSize, DefaultMaxUncommittedEntriesSize)
	setDefault(&c.MaxProposalBytes, DefaultMaxProposalBytes)
	setDefault(&c.MaxMessageBytes, DefaultMaxMessageBytes)
	setDefault(&c.ProposalQueue, DefaultProposalQueue)
	setDefault(&c.ReceiveQueue, DefaultReceiveQueue)
	setDefault(&c.SnapshotEvery, DefaultSnapshotEvery)
	setDefault(&c.KeepEntries, DefaultKeepEntries)
	// An append message carries MaxSizePerMsg of entries, or one
	// entry of up to MaxProposalBytes, plus headers.
	if limit := uint64(c.MaxMessageBytes) - messageOverhead; uint64(c.MaxProposalBytes) > limit || c.MaxSizePerMsg > limit {
		return c, fmt.Errorf("raftnode: proposals of %d bytes or appends of %d do not fit messages of %d bytes", c.MaxProposalBytes, c.MaxSizePerMsg, c.MaxMessageBytes)
	}
	if c.HeartbeatTick >= c.ElectionTick {
		return c, fmt.Errorf("raftnode: heartbeat tick %d not below election tick %d", c.HeartbeatTick, c.ElectionTick)
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	return c, nil
}

// messageOverhead is room for a message's own fields and its wrapping
// around the entries it carries.
const messageOverhead = 16 << 10

func setDefault[T comparable](v *T, d T) {
	var zero T
	if *v == zero {
		*v = d
	}
}

// Flusher is a StateMachine that makes a batch of applied entries
// durable at once: Flush is called after the committed entries of each
// Ready have been applied (a member catching up gets thousands in one),
// so Apply may leave its writes unsynced and its effects unpublished
// until then. An error is fatal, as for Apply.
type Flusher interface {
	Flush() error
}

// StateMachine is what a member applies committed entries to. Its
// methods are called from the member's Ready loop only, one at a time.
type StateMachine interface {
	// Applied is the raft index of the last entry the machine has
	// durably applied (0 for a new machine). It is read at start:
	// committed entries at or below it are not applied again, and a
	// machine behind the log's snapshot is first restored from it.
	Applied() uint64
	// Apply applies the committed normal entry at index. Every normal
	// entry is passed, in log order, including the empty ones (data
	// of length 0: the entry each new leader commits at the start of
	// its term), so that the machine can record every index as
	// applied. Configuration changes are applied by the member itself
	// and are not passed. The same proposal may be committed twice (a
	// caller retries after a leader change); the machine deduplicates.
	// An error is fatal: the member stops and reports it from Err, and
	// never applies anything after it.
	Apply(index uint64, data []byte) error
	// Snapshot returns the machine's state as of the last entry it
	// applied, for the log's snapshot (sent to a follower that is
	// behind past a compaction). An error postpones the snapshot.
	Snapshot() ([]byte, error)
	// Restore replaces the machine's state with a snapshot's data, as
	// of index. An error is fatal, as for Apply.
	Restore(index uint64, data []byte) error
}

// Transport carries raft messages between members. Messages to this
// member arrive through the receiving side (RegisterServer for the gRPC
// transport), which hands them to [Node.Step].
type Transport interface {
	// Start is called once, before the first Send, with the member's
	// id and where to report delivery failures.
	Start(self uint64, r Reporter) error
	// Send queues messages for delivery and returns at once: it must
	// never block the Ready loop. A message it cannot deliver is
	// dropped and reported.
	Send(msgs []*pb.Message)
	// AddPeer sets the address of a member (a new member, or a new
	// address); RemovePeer forgets one.
	AddPeer(id uint64, addr string)
	RemovePeer(id uint64)
	// Stop stops delivering and releases connections.
	Stop()
}

// Reporter receives the delivery failures of a Transport; a [Node] is
// one. Its methods never block.
type Reporter interface {
	// ReportUnreachable says a message to id was dropped.
	ReportUnreachable(id uint64)
	// ReportSnapshot says a snapshot message to id was delivered
	// (failed false) or dropped (failed true).
	ReportSnapshot(id uint64, failed bool)
}
