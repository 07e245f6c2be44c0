package raftnode

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tempel-ksi/tempel/internal/raftlog"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
)

// Node is one running member. Its methods are safe for concurrent use.
type Node struct {
	cfg Config
	id  uint64
	log *slog.Logger
	st  *raftlog.Storage
	sm  StateMachine
	tr  Transport

	proposals chan proposal
	recv      chan *pb.Message
	reports   chan report
	stop      chan struct{}
	done      chan struct{}
	stopOnce  sync.Once
	closeErr  error

	mu     sync.Mutex
	status Status
	peers  map[uint64]string
	err    error

	// Owned by the Ready loop.
	rn        *raft.RawNode
	applied   uint64 // last index applied, any entry type
	smApplied uint64 // normal entries at or below it are not applied again
	// removed: the last change of this member's own membership applied
	// was its removal. A member rebuilt from the log replays its
	// removal before being added again, so it stops only once it has
	// applied everything committed and is still removed.
	removed   bool
	snapIndex uint64 // index of the log's latest snapshot
	nextSnap  uint64 // applied index at which to try the next snapshot
	confState *pb.ConfState
	lastHeard map[uint64]time.Time
	lead      uint64
	restores  uint64
	changes   uint64
	snapsSent uint64 // snapshot messages delivered to a peer
	snapsLost uint64 // snapshot messages that could not be delivered
	// pending is the log's snapshot data to restore into a state
	// machine found behind it at start, first thing in the Ready loop,
	// once the transport runs (the machine may fetch from peers).
	pending []byte

	fetching      chan struct{} // a slot per fetch served at once
	fetchesServed atomic.Uint64
	restoring     atomic.Bool // the state machine is being restored from a snapshot
}

type proposal struct {
	data []byte
	cc   *pb.ConfChangeV2
	res  chan error
}

type report struct {
	id       uint64
	snapshot bool // a snapshot report, else unreachable
	failed   bool
}

// Start opens the member's raft log in cfg.Dir and runs its Ready loop.
// On an empty log it bootstraps the cluster from cfg.Peers (unless
// cfg.Join); otherwise it restarts from the log. The state machine is
// restored from the log's snapshot first if it is behind it.
func Start(cfg Config) (*Node, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	st, err := raftlog.Open(cfg.Dir, raftlog.Options{Logger: cfg.Logger})
	if err != nil {
		return nil, err
	}
	n := &Node{
		cfg: cfg, id: cfg.ID, log: cfg.Logger.With("member", cfg.ID), st: st,
		sm: cfg.StateMachine, tr: cfg.Transport,
		proposals: make(chan proposal, cfg.ProposalQueue),
		recv:      make(chan *pb.Message, cfg.ReceiveQueue),
		reports:   make(chan report, cfg.ReceiveQueue),
		stop:      make(chan struct{}),
		done:      make(chan struct{}),
		peers:     make(map[uint64]string),
		lastHeard: make(map[uint64]time.Time),
		fetching:  make(chan struct{}, DefaultFetchServers),
	}
	for id, addr := range cfg.Peers {
		n.peers[id] = addr
	}
	if err := n.open(); err != nil {
		st.Close()
		return nil, err
	}
	if err := n.tr.Start(n.id, n); err != nil {
		st.Close()
		return nil, fmt.Errorf("raftnode: start transport: %w", err)
	}
	for id, addr := range n.peers {
		if id != n.id {
			n.tr.AddPeer(id, addr)
		}
	}
	n.publish()
	go n.run()
	return n, nil
}

// open checks the state machine against the log and creates the
// RawNode.
func (n *Node) open() error {
	hs, cs, err := n.st.InitialState()
	if err != nil {
		return err
	}
	last, err := n.st.LastIndex()
	if err != nil {
		return err
	}
	snap, err := n.st.Snapshot()
	if err != nil {
		return err
	}
	n.snapIndex = snap.GetMetadata().GetIndex()
	n.confState = cs
	fresh := last == 0 && raft.IsEmptyHardState(hs) && n.snapIndex == 0
	n.smApplied = n.sm.Applied()
	// The machine cannot be ahead of what the log says is committed:
	// that log lost entries a majority acknowledged, or belongs to
	// another machine. Starting on it could vote or apply wrongly.
	// A member joining on an empty log with its state machine kept (its
	// log was lost and it was removed and added again) is the exception:
	// it receives the whole log and skips the entries it has applied.
	if n.smApplied > hs.GetCommit() && n.smApplied > n.snapIndex && !(fresh && n.cfg.Join) {
		return fmt.Errorf("raftnode: the state machine applied index %d but the raft log in %s commits only %d (log lost or replaced; rejoin the member)",
			n.smApplied, n.cfg.Dir, max(hs.GetCommit(), n.snapIndex))
	}
	var data []byte
	if n.snapIndex > 0 {
		var peers map[uint64]string
		if peers, data, err = decodeSnapData(snap.GetData()); err != nil {
			return fmt.Errorf("raftnode: the log's snapshot at %d: %w", n.snapIndex, err)
		}
		// The transport is not started yet; Start gives it the whole
		// address book.
		for id, addr := range peers {
			n.setAddr(id, addr)
		}
	}
	if n.snapIndex > n.smApplied {
		// Restored in Start once the transport runs: the machine may
		// fetch what the snapshot describes from peers.
		n.pending = append([]byte{}, data...)
	}
	// raft hands back every committed entry after the snapshot, the
	// configuration changes among them, which rebuild the membership;
	// normal entries the machine already applied are skipped in apply.
	n.applied = n.snapIndex
	n.nextSnap = n.snapIndex + n.cfg.SnapshotEvery
	rn, err := raft.NewRawNode(&raft.Config{
		ID:                        n.id,
		ElectionTick:              n.cfg.ElectionTick,
		HeartbeatTick:             n.cfg.HeartbeatTick,
		Storage:                   n.st,
		Applied:                   n.snapIndex,
		MaxSizePerMsg:             n.cfg.MaxSizePerMsg,
		MaxInflightMsgs:           n.cfg.MaxInflightMsgs,
		MaxUncommittedEntriesSize: n.cfg.MaxUncommittedEntriesSize,
		CheckQuorum:               true,
		PreVote:                   true,
		// Proposals are made at the leader only; a follower answers
		// ErrNotLeader naming it, so the caller knows where to go.
		DisableProposalForwarding: true,
		Logger:                    raftLogger{n.log},
	})
	if err != nil {
		return fmt.Errorf("raftnode: %w", err)
	}
	n.rn = rn
	if fresh && !n.cfg.Join {
		ids := make([]uint64, 0, len(n.cfg.Peers))
		for id := range n.cfg.Peers {
			ids = append(ids, id)
		}
		slices.Sort(ids)
		peers := make([]raft.Peer, len(ids))
		for i, id := range ids {
			peers[i] = raft.Peer{ID: id, Context: []byte(n.cfg.Peers[id])}
		}
		if err := rn.Bootstrap(peers); err != nil {
			return fmt.Errorf("raftnode: bootstrap: %w", err)
		}
		n.log.Info("raft cluster bootstrapped", "members", ids)
	} else {
		n.log.Info("raft member restarted", "snapshot", n.snapIndex, "applied", n.smApplied, "commit", hs.GetCommit(), "last", last)
	}
	return nil
}

// Propose asks the cluster to commit data. It returns nil once the
// leader (this member) has appended it to its log: not yet committed.
// Whether it commits shows only in the state machine's Apply; after a
// leader change an accepted proposal may be lost, and a caller that
// retries it may see it committed twice (the state machine
// deduplicates). Errors: *NotLeaderError (ErrNotLeader), ErrBusy (the
// queue is full, at once), ErrDropped (retry), ErrTooLarge, ErrStopped,
// or ctx's error.
func (n *Node) Propose(ctx context.Context, data []byte) error {
	if len(data) > n.cfg.MaxProposalBytes {
		return fmt.Errorf("%w: %d bytes, at most %d", ErrTooLarge, len(data), n.cfg.MaxProposalBytes)
	}
	return n.submit(ctx, proposal{data: data})
}

func (n *Node) submit(ctx context.Context, p proposal) error {
	if st := n.Status(); !st.IsLeader {
		return &NotLeaderError{Leader: st.Leader, Addr: st.LeaderAddr}
	}
	p.res = make(chan error, 1)
	select {
	case <-n.done:
		return ErrStopped
	default:
	}
	select {
	case n.proposals <- p:
	default:
		return fmt.Errorf("%w: %d proposals waiting", ErrBusy, n.cfg.ProposalQueue)
	}
	select {
	case err := <-p.res:
		return err
	case <-n.done:
		return ErrStopped
	case <-ctx.Done():
		return fmt.Errorf("raftnode: propose: %w", ctx.Err())
	}
}

// Step hands a message received from another member to the Ready loop.
// Messages addressed to another member, from a member not known here,
// or of a kind that never travels between members are refused; a full receive queue
// drops the message with ErrBusy (raft retransmits).
func (n *Node) Step(m *pb.Message) error {
	if m.GetTo() != n.id {
		return fmt.Errorf("%w: to %d, this is %d", ErrWrongMember, m.GetTo(), n.id)
	}
	if m.GetFrom() == 0 || m.GetFrom() == n.id {
		return fmt.Errorf("raftnode: message from member %d refused", m.GetFrom())
	}
	// Only members this one knows (Config.Peers and members added
	// since) take part; a removed member's traffic is refused too.
	if n.peerAddr(m.GetFrom()) == "" {
		return fmt.Errorf("raftnode: message from member %d refused: not a member known here", m.GetFrom())
	}
	// Proposals enter through Propose only; local kinds are raft's own.
	if t := m.GetType(); raft.IsLocalMsg(t) || t == pb.MessageType_MsgProp {
		return fmt.Errorf("raftnode: message of type %s refused from the network", t)
	}
	select {
	case <-n.done:
		return ErrStopped
	default:
	}
	select {
	case n.recv <- m:
		return nil
	default:
		n.mu.Lock()
		n.status.DroppedMessages++
		n.mu.Unlock()
		return fmt.Errorf("%w: %d received messages waiting", ErrBusy, n.cfg.ReceiveQueue)
	}
}

// ReportUnreachable implements Reporter.
func (n *Node) ReportUnreachable(id uint64) {
	select {
	case n.reports <- report{id: id}:
	default: // a hint; raft probes again anyway
	}
}

// ReportSnapshot implements Reporter.
func (n *Node) ReportSnapshot(id uint64, failed bool) {
	select {
	case n.reports <- report{id: id, snapshot: true, failed: failed}:
	default: // the follower's answer to the snapshot moves raft on too
	}
}

// Status is a member's view of the cluster.
type Status struct {
	ID uint64
	// Leader is the leader's id, 0 when none is known; LeaderAddr its
	// address.
	Leader     uint64
	LeaderAddr string
	Term       uint64
	Commit     uint64
	// Applied is the last raft index the member applied (entries of
	// every kind).
	Applied  uint64
	IsLeader bool
	// HasQuorum (leader only): a majority of the voters, this member
	// included, was heard from within the last election timeout.
	HasQuorum bool
	// Members holds the leader's view of each member's replication;
	// nil on a follower.
	Members map[uint64]MemberStatus
	// LeaderChanges counts the leaders this member saw elected.
	LeaderChanges uint64
	// Restores counts snapshots restored into the state machine.
	Restores uint64
	// SnapshotsSent and SnapshotsFailed count the snapshot messages
	// this member (as leader) delivered to a peer, or could not.
	SnapshotsSent, SnapshotsFailed uint64
	// Restoring: the state machine is being restored from a snapshot
	// (it may be fetching from peers); it applies nothing meanwhile.
	Restoring bool
	// FetchesServed counts the peers' fetches of state this member
	// answered in full (a restoring member fetches what a snapshot describes).
	FetchesServed uint64
	// DroppedMessages counts received messages dropped at a full
	// receive queue.
	DroppedMessages uint64
}

// MemberStatus is the leader's view of one member.
type MemberStatus struct {
	Addr         string
	Learner      bool
	Match, Next  uint64
	State        string // raft's progress state: StateProbe, StateReplicate or StateSnapshot
	RecentActive bool
}

// Status returns the member's latest view; it never blocks on the loop.
func (n *Node) Status() Status {
	n.mu.Lock()
	s := n.status
	n.mu.Unlock()
	s.FetchesServed = n.fetchesServed.Load()
	s.Restoring = n.restoring.Load()
	return s
}

// LeaderChanges counts the leaders this member saw elected.
func (n *Node) LeaderChanges() uint64 { return n.Status().LeaderChanges }

// Done is closed when the member stopped: after Stop, or at a fatal
// error (then Err says which).
func (n *Node) Done() <-chan struct{} { return n.done }

// Err is the fatal error that stopped the member, nil if none.
func (n *Node) Err() error {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.err
}

// Stop stops the Ready loop and the transport and closes the log. It
// returns the error of closing the log; Err reports a fatal error.
func (n *Node) Stop() error {
	n.stopOnce.Do(func() {
		close(n.stop)
		<-n.done
		n.tr.Stop()
		n.closeErr = n.st.Close()
	})
	return n.closeErr
}

// peerAddr is the address of member id, "" if unknown.
func (n *Node) peerAddr(id uint64) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.peers[id]
}
