package raftlog

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log"
	"testing"

	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// member is one raft.RawNode on its own Storage with a tiny state
// machine: the number of entries applied and a running hash over their
// data, so members that applied the same log agree byte for byte.
type member struct {
	id  uint64
	dir string
	st  *Storage
	rn  *raft.RawNode
	up  bool

	count     uint64
	digest    [32]byte
	applied   uint64
	conf      *pb.ConfState
	snapshots int // snapshots received from the leader
}

func (m *member) stateData() []byte {
	b := binary.BigEndian.AppendUint64(nil, m.count)
	return append(b, m.digest[:]...)
}

func (m *member) restore(snap *pb.Snapshot) error {
	d := snap.GetData()
	if len(d) != 40 {
		return fmt.Errorf("snapshot data of %d bytes", len(d))
	}
	m.count = binary.BigEndian.Uint64(d)
	copy(m.digest[:], d[8:])
	m.applied = snap.GetMetadata().GetIndex()
	m.conf = snap.GetMetadata().GetConfState()
	return nil
}

// cluster runs members in one goroutine, passing messages through
// in-memory queues; time is raft ticks, given when nobody has work.
type cluster struct {
	t       *testing.T
	members []*member
	inbox   map[uint64][]*pb.Message
}

var quietRaft = &raft.DefaultLogger{Logger: log.New(io.Discard, "", 0)}

func (c *cluster) start(m *member, bootstrap bool) {
	c.t.Helper()
	st, err := Open(m.dir, Options{})
	if err != nil {
		c.t.Fatalf("member %d: %v", m.id, err)
	}
	m.st, m.count, m.digest, m.applied, m.conf = st, 0, [32]byte{}, 0, nil
	snap, err := st.Snapshot()
	if err != nil {
		c.t.Fatal(err)
	}
	if !raft.IsEmptySnap(snap) {
		if err := m.restore(snap); err != nil {
			c.t.Fatal(err)
		}
	}
	rn, err := raft.NewRawNode(&raft.Config{
		ID: m.id, ElectionTick: 10, HeartbeatTick: 1, Storage: st, Applied: m.applied,
		MaxSizePerMsg: 64 << 10, MaxInflightMsgs: 64, PreVote: true, CheckQuorum: true, Logger: quietRaft,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if bootstrap {
		if err := rn.Bootstrap([]raft.Peer{{ID: 1}, {ID: 2}, {ID: 3}}); err != nil {
			c.t.Fatal(err)
		}
	}
	m.rn, m.up = rn, true
}

func (c *cluster) stop(m *member) {
	c.t.Helper()
	if err := m.st.Close(); err != nil {
		c.t.Fatal(err)
	}
	m.rn, m.st, m.up = nil, nil, false
	delete(c.inbox, m.id)
}

// handle runs one Ready of m the way a member's Ready loop must: persist
// snapshot, entries and hard state in one Save, only then send, then
// apply what is committed.
func (c *cluster) handle(m *member) bool {
	if !m.rn.HasReady() {
		return false
	}
	rd := m.rn.Ready()
	if err := m.st.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
		c.t.Fatalf("member %d: save: %v", m.id, err)
	}
	if !raft.IsEmptySnap(rd.Snapshot) {
		if err := m.restore(rd.Snapshot); err != nil {
			c.t.Fatal(err)
		}
		m.snapshots++
	}
	for _, msg := range rd.Messages {
		to := c.members[msg.GetTo()-1]
		if !to.up {
			m.rn.ReportUnreachable(to.id)
			if msg.GetType() == pb.MessageType_MsgSnap {
				m.rn.ReportSnapshot(to.id, raft.SnapshotFailure)
			}
			continue
		}
		c.inbox[to.id] = append(c.inbox[to.id], msg)
		if msg.GetType() == pb.MessageType_MsgSnap {
			m.rn.ReportSnapshot(to.id, raft.SnapshotFinish)
		}
	}
	for _, e := range rd.CommittedEntries {
		switch e.GetType() {
		case pb.EntryType_EntryConfChange:
			var cc pb.ConfChange
			if err := proto.Unmarshal(e.GetData(), &cc); err != nil {
				c.t.Fatal(err)
			}
			m.conf = m.rn.ApplyConfChange(&cc)
		case pb.EntryType_EntryNormal:
			if len(e.GetData()) > 0 {
				m.count++
				m.digest = sha256.Sum256(append(m.digest[:], e.GetData()...))
			}
		}
		m.applied = e.GetIndex()
	}
	m.rn.Advance(rd)
	return true
}

// run steps the cluster until done holds, failing after a bounded
// number of rounds.
func (c *cluster) run(what string, done func() bool) {
	c.t.Helper()
	for round := 0; round < 200000; round++ {
		if done() {
			return
		}
		busy := false
		for _, m := range c.members {
			if !m.up {
				continue
			}
			msgs := c.inbox[m.id]
			c.inbox[m.id] = nil
			for _, msg := range msgs {
				busy = true
				// Errors here are raft refusing a stale or foreign
				// message, which a transport drops as well.
				_ = m.rn.Step(msg)
			}
			if c.handle(m) {
				busy = true
			}
		}
		if !busy {
			for _, m := range c.members {
				if m.up {
					m.rn.Tick()
				}
			}
		}
	}
	c.t.Fatalf("%s: not reached", what)
}

func (c *cluster) leader() *member {
	for _, m := range c.members {
		if m.up && m.rn.BasicStatus().RaftState == raft.StateLeader {
			return m
		}
	}
	return nil
}

func (c *cluster) upApplied(n uint64) func() bool {
	return func() bool {
		for _, m := range c.members {
			if m.up && m.count < n {
				return false
			}
		}
		return true
	}
}

// propose has the leader propose entries from, from+1, ... and waits
// until every running member applied them.
func (c *cluster) propose(from, n uint64) {
	c.t.Helper()
	for i := from; i < from+n; {
		c.run("a leader", func() bool { return c.leader() != nil })
		// Up to 50 at a time, so the leader's log is stepped out in
		// several appends.
		for j := 0; j < 50 && i < from+n; j++ {
			data := fmt.Appendf(nil, "proposal %d", i)
			if err := c.leader().rn.Propose(data); errors.Is(err, raft.ErrProposalDropped) {
				break // retried at the next leader
			} else if err != nil {
				c.t.Fatal(err)
			}
			i++
		}
		c.run("proposals applied", c.upApplied(i))
	}
}

func (c *cluster) checkSame(total uint64) {
	c.t.Helper()
	ref := c.members[0]
	for _, m := range c.members {
		if m.count != total || m.digest != ref.digest {
			c.t.Fatalf("member %d applied %d entries, digest %x; member %d: %d, %x (want %d)",
				m.id, m.count, m.digest[:6], ref.id, ref.count, ref.digest[:6], total)
		}
	}
}

// TestClusterOnStorage runs three raft.RawNode members, each on its own
// Storage in a temporary directory: they elect a leader and commit 1,000
// proposals; a follower restarts from its storage and catches up from
// the log; then the leader is stopped, the others go on, snapshot and
// compact, and the old leader restarts and catches up from a snapshot.
func TestClusterOnStorage(t *testing.T) {
	if testing.Short() {
		t.Skip("a thousand synced writes per member")
	}
	c := &cluster{t: t, inbox: make(map[uint64][]*pb.Message)}
	for id := uint64(1); id <= 3; id++ {
		m := &member{id: id, dir: t.TempDir()}
		c.members = append(c.members, m)
		c.start(m, true)
	}
	defer func() {
		for _, m := range c.members {
			if m.up {
				m.st.Close()
			}
		}
	}()

	c.propose(0, 1000)
	c.checkSame(1000)

	// A follower stops, misses 100 entries, restarts from its storage
	// (re-applying its log) and catches up from the leader's log.
	var follower *member
	for _, m := range c.members {
		if m != c.leader() {
			follower = m
		}
	}
	c.stop(follower)
	c.propose(1000, 100)
	c.start(follower, false)
	c.run("follower caught up", c.upApplied(1100))
	c.checkSame(1100)
	if follower.snapshots != 0 {
		t.Fatalf("follower needed %d snapshots; the log was not compacted", follower.snapshots)
	}

	// The leader stops; the others elect a new one, go on, snapshot and
	// compact their logs; the old leader restarts and, its next entry
	// compacted away everywhere, catches up from a snapshot.
	old := c.leader()
	c.stop(old)
	c.propose(1100, 100)
	for _, m := range c.members {
		if !m.up {
			continue
		}
		if _, err := m.st.CreateSnapshot(m.applied, m.conf, m.stateData()); err != nil {
			t.Fatal(err)
		}
		if err := m.st.Compact(m.applied); err != nil {
			t.Fatal(err)
		}
	}
	c.start(old, false)
	c.run("old leader caught up", c.upApplied(1200))
	c.checkSame(1200)
	if old.snapshots == 0 {
		t.Fatal("the old leader caught up without a snapshot")
	}
	// Its log now starts after the snapshot, and its state survives a
	// restart from the snapshot plus the log after it.
	c.propose(1200, 20)
	c.run("all applied", c.upApplied(1220))
	c.stop(old)
	c.start(old, false)
	c.run("restarted from snapshot", c.upApplied(1220))
	c.checkSame(1220)
	first, _ := old.st.FirstIndex()
	if first <= 1 {
		t.Fatalf("old leader's log starts at %d, not after the snapshot", first)
	}
}
