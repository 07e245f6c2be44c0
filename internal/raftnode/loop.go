package raftnode

import (
	"errors"
	"fmt"
	"time"

	"go.etcd.io/raft/v3"
	"go.etcd.io/raft/v3/quorum"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
	"google.golang.org/protobuf/proto"
)

// drainBatch bounds how many queued inputs one loop turn takes before
// handling the Ready, so that many proposals share one synced Save.
const drainBatch = 256

// run is the Ready loop: the only goroutine touching the RawNode.
func (n *Node) run() {
	defer close(n.done)
	defer n.tr.Stop()
	defer func() {
		if r := recover(); r != nil {
			// raft's invariant checks and Pebble's fatal write
			// errors panic; the member stops with the reason.
			n.fail(fmt.Errorf("raftnode: %v", r))
		}
	}()
	if n.pending != nil {
		err := n.restoreMachine(n.snapIndex, n.pending)
		n.pending = nil
		if errors.Is(err, errStopping) {
			return
		}
		if err != nil {
			n.fail(fmt.Errorf("raftnode: restore the log's snapshot at %d: %w", n.snapIndex, err))
			return
		}
		n.smApplied = n.snapIndex
		n.restores++
		n.publish()
	}
	ticker := time.NewTicker(n.cfg.TickInterval)
	defer ticker.Stop()
	for {
		select {
		case <-n.stop:
			return
		case <-ticker.C:
			n.rn.Tick()
		case p := <-n.proposals:
			n.propose(p)
		case m := <-n.recv:
			n.step(m)
		case r := <-n.reports:
			n.report(r)
		}
		n.drain()
		for n.rn.HasReady() {
			if err := n.handleReady(); errors.Is(err, errStopping) {
				return
			} else if err != nil {
				n.fail(err)
				return
			}
		}
		n.publish()
	}
}

// drain takes what else is queued, up to drainBatch inputs.
func (n *Node) drain() {
	for range drainBatch {
		select {
		case p := <-n.proposals:
			n.propose(p)
		case m := <-n.recv:
			n.step(m)
		case r := <-n.reports:
			n.report(r)
		default:
			return
		}
	}
}

func (n *Node) propose(p proposal) {
	if n.rn.BasicStatus().RaftState != raft.StateLeader {
		p.res <- &NotLeaderError{Leader: n.lead, Addr: n.peerAddr(n.lead)}
		return
	}
	var err error
	if p.cc != nil {
		err = n.rn.ProposeConfChange(p.cc)
	} else {
		err = n.rn.Propose(p.data)
	}
	if errors.Is(err, raft.ErrProposalDropped) {
		err = ErrDropped
	}
	p.res <- err
}

func (n *Node) step(m *pb.Message) {
	n.lastHeard[m.GetFrom()] = time.Now()
	// raft refuses stale messages and messages from members it does
	// not know; a transport drops those too.
	if err := n.rn.Step(m); err != nil {
		n.log.Debug("raft message refused", "from", m.GetFrom(), "type", m.GetType().String(), "err", err)
	}
}

func (n *Node) report(r report) {
	if !r.snapshot {
		n.rn.ReportUnreachable(r.id)
		return
	}
	status := raft.SnapshotFinish
	if r.failed {
		status = raft.SnapshotFailure
		n.snapsLost++
	} else {
		n.snapsSent++
	}
	n.rn.ReportSnapshot(r.id, status)
}

// handleReady handles one Ready in the order raft requires: persist,
// then send, then apply, then Advance.
func (n *Node) handleReady() error {
	rd := n.rn.Ready()
	if rd.SoftState != nil && rd.SoftState.Lead != n.lead {
		if rd.SoftState.Lead != 0 {
			n.changes++
			n.log.Info("raft leader", "leader", rd.SoftState.Lead, "term", n.rn.BasicStatus().HardState.GetTerm())
		}
		n.lead = rd.SoftState.Lead
	}
	// Nothing of this Ready may leave the member before it is durable:
	// a vote or an acknowledgement sent before its Save could be
	// forgotten by a crash and given twice.
	if err := n.st.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		return err
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := n.restore(rd.Snapshot); err != nil {
			return err
		}
	}
	if len(rd.Messages) > 0 {
		n.tr.Send(rd.Messages)
	}
	if err := n.apply(rd.CommittedEntries); err != nil {
		return err
	}
	if f, ok := n.sm.(Flusher); ok && len(rd.CommittedEntries) > 0 {
		if err := f.Flush(); err != nil {
			return fmt.Errorf("raftnode: flush the entries applied up to %d: %w", n.applied, err)
		}
	}
	if n.removed && n.applied >= n.rn.BasicStatus().HardState.GetCommit() {
		return ErrRemoved
	}
	n.rn.Advance(rd)
	return n.maybeSnapshot()
}

// restore installs a snapshot received from the leader (already saved
// in the log) into the state machine.
func (n *Node) restore(snap *pb.Snapshot) error {
	idx := snap.GetMetadata().GetIndex()
	peers, data, err := decodeSnapData(snap.GetData())
	if err != nil {
		return fmt.Errorf("raftnode: snapshot at %d: %w", idx, err)
	}
	for id, addr := range peers {
		n.learnAddr(id, addr)
	}
	if idx > n.smApplied {
		if err := n.restoreMachine(idx, data); errors.Is(err, errStopping) {
			return err
		} else if err != nil {
			return fmt.Errorf("raftnode: restore snapshot at %d: %w", idx, err)
		}
		n.smApplied = idx
		n.restores++
	}
	n.applied, n.snapIndex = idx, idx
	n.nextSnap = idx + n.cfg.SnapshotEvery
	n.confState = proto.Clone(snap.GetMetadata().GetConfState()).(*pb.ConfState)
	n.log.Info("raft snapshot restored", "index", idx)
	return nil
}

func (n *Node) apply(entries []*pb.Entry) error {
	for _, e := range entries {
		switch e.GetType() {
		case pb.EntryType_EntryNormal:
			if e.GetIndex() > n.smApplied {
				if err := n.sm.Apply(e.GetIndex(), e.GetData()); err != nil {
					return fmt.Errorf("raftnode: apply entry %d: %w", e.GetIndex(), err)
				}
			}
		case pb.EntryType_EntryConfChange, pb.EntryType_EntryConfChangeV2:
			if err := n.applyConfChange(e); err != nil {
				return err
			}
		}
		n.applied = e.GetIndex()
	}
	return nil
}

// applyConfChange applies a committed membership change to raft and the
// transport. The change's context carries the member's address.
func (n *Node) applyConfChange(e *pb.Entry) error {
	var cc pb.ConfChangeI
	if e.GetType() == pb.EntryType_EntryConfChange {
		var c1 pb.ConfChange
		if err := proto.Unmarshal(e.GetData(), &c1); err != nil {
			return fmt.Errorf("raftnode: conf change at %d: %w", e.GetIndex(), err)
		}
		cc = &c1
	} else {
		var c2 pb.ConfChangeV2
		if err := proto.Unmarshal(e.GetData(), &c2); err != nil {
			return fmt.Errorf("raftnode: conf change at %d: %w", e.GetIndex(), err)
		}
		cc = &c2
	}
	n.confState = n.rn.ApplyConfChange(cc)
	v2 := cc.AsV2()
	addr := string(v2.GetContext())
	for _, c := range v2.GetChanges() {
		id := c.GetNodeId()
		switch c.GetType() {
		case pb.ConfChangeType_ConfChangeAddNode, pb.ConfChangeType_ConfChangeAddLearnerNode:
			if id == n.id {
				n.removed = false
			}
			n.learnAddr(id, addr)
		case pb.ConfChangeType_ConfChangeRemoveNode:
			if id == n.id {
				n.removed = true
				continue
			}
			n.mu.Lock()
			delete(n.peers, id)
			n.mu.Unlock()
			n.tr.RemovePeer(id)
		}
	}
	return nil
}

// learnAddr records a member's address from a conf change; an address
// given in Config.Peers takes precedence (the operator's current word).
func (n *Node) learnAddr(id uint64, addr string) {
	if n.setAddr(id, addr) {
		n.tr.AddPeer(id, addr)
	}
}

// setAddr records the address in the address book; it reports whether
// it is new.
func (n *Node) setAddr(id uint64, addr string) bool {
	if id == n.id {
		return false
	}
	if configured, ok := n.cfg.Peers[id]; ok {
		// A member removed and added again is known here by its
		// configured address, which removing it dropped.
		addr = configured
	}
	if addr == "" {
		return false
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.peers[id] == addr {
		return false
	}
	n.peers[id] = addr
	return true
}

// maybeSnapshot snapshots the state machine every SnapshotEvery applied
// entries and compacts the log behind it, keeping KeepEntries.
func (n *Node) maybeSnapshot() error {
	// While replaying entries the machine already applied, its state is
	// ahead of n.applied: no snapshot until it is caught up.
	if n.applied < n.nextSnap || n.applied < n.smApplied {
		return nil
	}
	n.nextSnap = n.applied + n.cfg.SnapshotEvery
	data, err := n.sm.Snapshot()
	if err != nil {
		n.log.Warn("state machine snapshot failed; retried later", "applied", n.applied, "err", err)
		return nil
	}
	n.mu.Lock()
	data = encodeSnapData(n.peers, data)
	n.mu.Unlock()
	if _, err := n.st.CreateSnapshot(n.applied, n.confState, data); err != nil {
		if errors.Is(err, raft.ErrSnapOutOfDate) {
			return nil
		}
		return err
	}
	n.snapIndex = n.applied
	if n.applied <= n.cfg.KeepEntries {
		return nil
	}
	if err := n.st.Compact(n.applied - n.cfg.KeepEntries); err != nil && !errors.Is(err, raft.ErrCompacted) {
		return err
	}
	n.log.Debug("raft log compacted", "snapshot", n.applied, "kept", n.cfg.KeepEntries)
	return nil
}

// fail records a fatal error; the loop stops after it.
func (n *Node) fail(err error) {
	n.log.Error("raft member stopped", "err", err)
	n.mu.Lock()
	if n.err == nil {
		n.err = err
	}
	n.mu.Unlock()
}

// publish refreshes the Status that callers read.
func (n *Node) publish() {
	bs := n.rn.BasicStatus()
	s := Status{
		ID: n.id, Leader: bs.Lead, Term: bs.HardState.GetTerm(), Commit: bs.HardState.GetCommit(),
		Applied: n.applied, IsLeader: bs.RaftState == raft.StateLeader,
		LeaderChanges: n.changes, Restores: n.restores,
		SnapshotsSent: n.snapsSent, SnapshotsFailed: n.snapsLost,
	}
	if s.IsLeader {
		rs := n.rn.Status()
		s.Members = make(map[uint64]MemberStatus, len(rs.Progress))
		n.mu.Lock()
		for id, pr := range rs.Progress {
			s.Members[id] = MemberStatus{
				Addr: n.peers[id], Learner: pr.IsLearner, Match: pr.Match, Next: pr.Next,
				State: pr.State.String(), RecentActive: pr.RecentActive,
			}
		}
		n.mu.Unlock()
		s.HasQuorum = n.hasQuorum(rs.Config)
	}
	n.mu.Lock()
	s.LeaderAddr = n.peers[s.Leader]
	s.DroppedMessages = n.status.DroppedMessages
	n.status = s
	n.mu.Unlock()
}

// hasQuorum: a majority of the voters (of both halves of a joint
// configuration) was heard from within an election timeout, the same
// test CheckQuorum makes, but on the member's own clock so that it does
// not blink false when raft resets its activity flags.
func (n *Node) hasQuorum(cfg tracker.Config) bool {
	timeout := time.Duration(n.cfg.ElectionTick) * n.cfg.TickInterval
	now := time.Now()
	votes := make(map[uint64]bool)
	for id := range cfg.Voters.IDs() {
		votes[id] = id == n.id || now.Sub(n.lastHeard[id]) < timeout
	}
	return cfg.Voters.VoteResult(votes) == quorum.VoteWon
}
