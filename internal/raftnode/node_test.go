package raftnode

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

// (a) Three members elect a leader and apply 1,000 proposals made
// through it identically; the leader's status shows every member
// replicating and a quorum.
func TestThreeMembersAgree(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.proposeAll(c.members, keys("a", 0, 1000))
	for _, m := range c.members {
		if n, _ := m.sm.state(); n != 1000 {
			t.Fatalf("member %d applied %d entries, want 1000", m.id, n)
		}
	}
	l := c.leaderOf(c.members)
	waitFor(t, 5*time.Second, "leader status with every member matched", func() bool {
		s := l.node.Status()
		if !s.IsLeader || !s.HasQuorum || len(s.Members) != 3 {
			return false
		}
		for id, ms := range s.Members {
			if ms.Match != s.Commit || ms.Addr == "" && id != l.id {
				return false
			}
		}
		return true
	})
	for _, m := range c.others(l) {
		s := m.node.Status()
		if s.IsLeader || s.Members != nil || s.LeaderAddr != l.addr {
			t.Errorf("follower %d status %+v", m.id, s)
		}
	}
}

// (b) The leader stops: the others elect a new leader and go on; the
// old leader restarts from its directory (its state machine kept, as a
// durable one would be) and catches up without applying anything twice.
func TestLeaderStopsAndRestarts(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.proposeAll(c.members, keys("b", 0, 100))
	old := c.leaderOf(c.members)
	c.stop(old)
	rest := c.others(old)
	start := time.Now()
	next := c.leaderOf(rest)
	if next == old {
		t.Fatal("the stopped member still leads")
	}
	t.Logf("new leader %d after %v", next.id, time.Since(start))
	c.proposeAll(rest, keys("b", 100, 100))
	if ch := next.node.LeaderChanges(); ch < 2 {
		t.Errorf("new leader saw %d leader changes, want at least 2", ch)
	}
	c.start(old)
	c.waitSame(c.members, 200)
	c.proposeAll(c.members, keys("b", 200, 10))
	c.waitSame(c.members, 210)
}

// (c) The leader is cut off from both followers: CheckQuorum makes it
// step down, the majority elects a new leader and commits, and the
// proposal the old leader accepted while cut off never commits. After
// healing, all three agree.
func TestPartitionedLeader(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.proposeAll(c.members, keys("c", 0, 50))
	old := c.leaderOf(c.members)
	rest := c.others(old)
	for _, m := range rest {
		old.fault.Partition(m.id)
		m.fault.Partition(old.id)
	}
	// Still leader for up to an election timeout: it may accept this,
	// but cannot commit it.
	err := old.node.Propose(context.Background(), []byte("lost"))
	if err != nil && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("propose at the cut-off leader: %v", err)
	}
	waitFor(t, 5*time.Second, "the cut-off leader steps down", func() bool { return !old.node.Status().IsLeader })
	c.proposeAll(rest, keys("c", 50, 50))
	if old.sm.has("lost") {
		t.Fatal("the cut-off leader applied a proposal it could not replicate")
	}
	for _, m := range c.members {
		m.fault.Heal()
	}
	c.waitSame(c.members, 100)
	c.proposeAll(c.members, keys("c", 100, 10))
	for _, m := range c.members {
		if m.sm.has("lost") {
			t.Fatalf("member %d applied the cut-off leader's proposal", m.id)
		}
	}
}

// (d) Every member loses 20% of what it sends, and delays the rest: the
// cluster still commits and converges.
func TestMessageLoss(t *testing.T) {
	c := newCluster(t, 3, nil)
	for _, m := range c.members {
		m.fault.SetLoss(0.2)
		m.fault.SetDelay(2 * time.Millisecond)
	}
	c.proposeAll(c.members, keys("d", 0, 200))
	var dropped uint64
	for _, m := range c.members {
		dropped += m.fault.Dropped()
	}
	if dropped == 0 {
		t.Fatal("no message was dropped")
	}
	t.Logf("%d messages dropped", dropped)
}

// (e) A follower stopped while the others apply past a compaction
// catches up from a snapshot (Restore), and one whose state machine
// was lost is rebuilt from its log's snapshot at start.
func TestSnapshotCatchUp(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.SnapshotEvery, cfg.KeepEntries = 50, 10 })
	c.proposeAll(c.members, keys("e", 0, 20))
	l := c.leaderOf(c.members)
	f := c.others(l)[0]
	behind := f.sm.Applied()
	// Cut f off first, so that no message for it waits in a
	// transport's queue to bring it the log when it is back.
	for _, m := range c.others(f) {
		m.fault.Partition(f.id)
	}
	c.stop(f)
	c.proposeAll(c.others(f), keys("e", 20, 300))
	// The compaction follows the apply that the test saw.
	waitFor(t, 5*time.Second, "the leader's log compacted past the follower", func() bool {
		first, err := l.node.st.FirstIndex()
		return err == nil && first > behind+1
	})
	c.start(f)
	for _, m := range c.others(f) {
		m.fault.Heal()
	}
	c.waitSame(c.members, 320)
	if f.sm.restored() == 0 {
		t.Fatal("the follower caught up without a snapshot")
	}
	// Status is published at the end of the loop's turn.
	waitFor(t, 5*time.Second, "the restore counted in Status", func() bool { return f.node.Status().Restores > 0 })
	// Its machine lost: the log's snapshot restores it at start, the
	// log after it is applied again.
	c.stop(f)
	f.sm = newToySM()
	c.start(f)
	// The restore is the Ready loop's first step.
	waitFor(t, 5*time.Second, "the new state machine restored at start", func() bool { return f.sm.restored() > 0 })
	c.waitSame(c.members, 320)
	if r := f.sm.restored(); r != 1 {
		t.Fatalf("a new state machine was restored %d times", r)
	}
	c.proposeAll(c.members, keys("e", 320, 10))
}

// (f) A follower refuses a proposal naming the leader.
func TestProposeOnFollower(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leaderOf(c.members)
	for _, f := range c.others(l) {
		err := f.node.Propose(context.Background(), []byte("x"))
		var nl *NotLeaderError
		if !errors.As(err, &nl) || !errors.Is(err, ErrNotLeader) {
			t.Fatalf("follower %d: %v, want a NotLeaderError", f.id, err)
		}
		if nl.Leader != l.id || nl.Addr != l.addr {
			t.Fatalf("follower %d names leader %d at %s, want %d at %s", f.id, nl.Leader, nl.Addr, l.id, l.addr)
		}
	}
	if err := l.node.Propose(context.Background(), make([]byte, DefaultMaxProposalBytes+1)); !errors.Is(err, ErrTooLarge) {
		t.Fatalf("oversized proposal: %v", err)
	}
	// The largest proposal fits an append message on the wire.
	big := bytes.Repeat([]byte{'x'}, DefaultMaxProposalBytes)
	if err := l.node.Propose(context.Background(), big); err != nil {
		t.Fatal(err)
	}
	c.waitSame(c.members, 1)
}

// (f) With the Ready loop held up, the proposal queue fills and the next
// proposal is refused at once instead of waiting.
func TestFullProposalQueue(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.ProposalQueue = 2 })
	m := c.members[0]
	m.sm.block, m.sm.entered = make(chan struct{}), make(chan struct{})
	c.leaderOf(c.members)
	if err := m.node.Propose(context.Background(), []byte("block")); err != nil {
		t.Fatal(err)
	}
	<-m.sm.entered // the loop is inside Apply now
	errs := make(chan error, 2)
	for i := range 2 {
		go func() { errs <- m.node.Propose(context.Background(), []byte{byte('p' + i)}) }()
	}
	waitFor(t, 5*time.Second, "two proposals queued", func() bool { return len(m.node.proposals) == 2 })
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	start := time.Now()
	err := m.node.Propose(ctx, []byte("one too many"))
	if !errors.Is(err, ErrBusy) {
		t.Fatalf("propose at a full queue: %v", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("refusal took %v", d)
	}
	close(m.sm.block)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatalf("queued proposal: %v", err)
		}
	}
	c.waitSame(c.members, 3)
}

// An entry the state machine fails to apply stops every member that
// reaches it (the log is the same everywhere; a follower the commit index
// did not reach before the leader stopped simply waits): Done is
// closed, Err names the failure, and nothing is applied or accepted
// after it.
func TestApplyErrorStopsMember(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.proposeAll(c.members, keys("p", 0, 10))
	// The leader that commits the poison applies it and stops (one
	// that loses leadership first may not: propose again then).
	var l *tmember
	waitFor(t, 15*time.Second, "a leader stopped on the poison entry", func() bool {
		l = c.leaderOf(c.members)
		if err := l.node.Propose(context.Background(), []byte("poison")); err != nil {
			return false
		}
		return poll(3*time.Second, func() bool {
			select {
			case <-l.node.Done():
				return true
			default:
				return false
			}
		})
	})
	for _, m := range c.members {
		// A follower may be stopping now, or never learn the commit.
		if err := m.node.Err(); err != nil || m == l {
			if err == nil || !strings.Contains(err.Error(), "poison") {
				t.Fatalf("member %d: Err %v", m.id, err)
			}
			select {
			case <-m.node.Done():
			case <-time.After(10 * time.Second):
				t.Fatalf("member %d failed but did not stop", m.id)
			}
		}
		if n, _ := m.sm.state(); n != 10 {
			t.Fatalf("member %d applied %d entries, want 10", m.id, n)
		}
	}
	if err := l.node.Propose(context.Background(), []byte("after")); !errors.Is(err, ErrStopped) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("propose after the failure: %v", err)
	}
	for _, m := range c.members {
		m.srv.Stop()
		if err := m.node.Stop(); err != nil {
			t.Fatal(err)
		}
		m.node = nil
	}
}
