package raftnode

import (
	"context"
	"net"
	"testing"
	"time"
)

// A fourth member joins as a learner, catches up, is promoted to voter
// and takes part; then it is removed and the three go on.
func TestAddPromoteRemoveMember(t *testing.T) {
	c := newCluster(t, 3, nil)
	c.proposeAll(c.members, keys("m", 0, 50))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m4 := &tmember{id: 4, addr: lis.Addr().String(), dir: t.TempDir(), sm: newToySM(), lis: lis}
	c.members = append(c.members, m4)
	c.peers[4] = m4.addr
	if err := c.tryStart(m4, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := c.leaderOf(c.members[:3])
	if err := l.node.PromoteMember(ctx, 4); err == nil {
		t.Fatal("promoted a member not yet added")
	}
	if err := l.node.AddMember(ctx, 4, m4.addr); err != nil {
		t.Fatal(err)
	}
	c.waitSame(c.members, 50)
	if err := l.node.PromoteMember(ctx, 4); err != nil {
		t.Fatal(err)
	}
	s := l.node.Status()
	if ms, ok := s.Members[4]; !ok || ms.Learner || ms.Addr != m4.addr {
		t.Fatalf("member 4 after promotion: %+v", s.Members)
	}
	if err := l.node.AddMember(ctx, 2, c.peers[2]); err == nil {
		t.Fatal("added a voter again (as a learner it would be demoted)")
	}
	c.proposeAll(c.members, keys("m", 50, 50))

	l = c.leaderOf(c.members)
	if l == m4 {
		t.Skip("the new member leads; removing the leader is not this test")
	}
	if err := l.node.RemoveMember(ctx, 4); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.node.Status().Members[4]; ok {
		t.Fatal("member 4 still in the configuration")
	}
	c.stop(m4)
	c.members = c.members[:3]
	c.proposeAll(c.members, keys("m", 100, 20))
}

// The address of a member added at run time is in the snapshots, so a
// member restarted after the conf change was compacted away, with only
// the original members in its Config.Peers, still knows where it is.
func TestAddressesSurviveCompaction(t *testing.T) {
	c := newCluster(t, 3, func(cfg *Config) { cfg.SnapshotEvery, cfg.KeepEntries = 20, 5 })
	original := map[uint64]string{1: c.peers[1], 2: c.peers[2], 3: c.peers[3]}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	m4 := &tmember{id: 4, addr: lis.Addr().String(), dir: t.TempDir(), sm: newToySM(), lis: lis}
	c.members = append(c.members, m4)
	c.peers[4] = m4.addr
	if err := c.tryStart(m4, true); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	l := c.leaderOf(c.members[:3])
	if err := l.node.AddMember(ctx, 4, m4.addr); err != nil {
		t.Fatal(err)
	}
	c.proposeAll(c.members, keys("s", 0, 100))
	f := c.others(l)[0]
	if f == m4 {
		f = c.others(l)[1]
	}
	// The compaction follows the apply that the test saw.
	waitFor(t, 5*time.Second, "the conf changes compacted away", func() bool {
		first, err := f.node.st.FirstIndex()
		return err == nil && first > 10
	})
	c.stop(f)
	f.peers = original
	c.start(f)
	if got := f.node.peerAddr(4); got != m4.addr {
		t.Fatalf("restarted member %d knows member 4 at %q, want %q", f.id, got, m4.addr)
	}
	c.proposeAll(c.members, keys("s", 100, 10))
}
