package raftnode

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	"go.etcd.io/raft/v3/quorum"
	pb "go.etcd.io/raft/v3/raftpb"
	"go.etcd.io/raft/v3/tracker"
)

func TestSnapDataRoundTrip(t *testing.T) {
	peers := map[uint64]string{1: "a:1", 2: "b:2", 300: "c:3"}
	b := encodeSnapData(peers, []byte("machine"))
	got, data, err := decodeSnapData(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[300] != "c:3" || got[1] != "a:1" || !bytes.Equal(data, []byte("machine")) {
		t.Fatalf("decoded %v %q", got, data)
	}
	// Every truncation and a flipped byte anywhere give an error or a
	// different decoding, never a panic.
	for i := range b {
		if _, _, err := decodeSnapData(b[:i]); err == nil && i < len(b)-len("machine") {
			t.Errorf("truncated at %d: no error", i)
		}
		c := bytes.Clone(b)
		c[i] ^= 0xff
		decodeSnapData(c)
	}
	if _, _, err := decodeSnapData(append([]byte("TRS1"), 0xff, 0xff, 0xff, 0xff, 0x0f)); !errors.Is(err, errSnapData) {
		t.Fatalf("huge member count: %v", err)
	}
}

func FuzzSnapData(f *testing.F) {
	f.Add(encodeSnapData(map[uint64]string{1: "x:1"}, []byte("m")))
	f.Fuzz(func(t *testing.T, b []byte) {
		peers, data, err := decodeSnapData(b)
		if err != nil {
			return
		}
		again, data2, err := decodeSnapData(encodeSnapData(peers, data))
		if err != nil || len(again) != len(peers) || !bytes.Equal(data, data2) {
			t.Fatalf("re-encoding changed it: %v", err)
		}
	})
}

// hasQuorum counts the voters heard from within an election timeout,
// in both halves of a joint configuration.
func TestHasQuorum(t *testing.T) {
	n := &Node{id: 1, cfg: Config{ElectionTick: 10, TickInterval: 100 * time.Millisecond}, lastHeard: map[uint64]time.Time{}}
	three := quorum.MajorityConfig{1: {}, 2: {}, 3: {}}
	cfg := tracker.Config{Voters: quorum.JointConfig{three, nil}}
	if n.hasQuorum(cfg) {
		t.Fatal("quorum with nobody heard from")
	}
	n.lastHeard[2] = time.Now().Add(-2 * time.Second)
	if n.hasQuorum(cfg) {
		t.Fatal("quorum with a member heard from two election timeouts ago")
	}
	n.lastHeard[2] = time.Now()
	if !n.hasQuorum(cfg) {
		t.Fatal("no quorum with 2 of 3 voters")
	}
	joint := tracker.Config{Voters: quorum.JointConfig{three, quorum.MajorityConfig{4: {}, 5: {}, 6: {}}}}
	if n.hasQuorum(joint) {
		t.Fatal("quorum in a joint configuration with its second half silent")
	}
	one := tracker.Config{Voters: quorum.JointConfig{quorum.MajorityConfig{1: {}}, nil}}
	if !n.hasQuorum(one) {
		t.Fatal("a single member is its own quorum")
	}
}

// With the Ready loop held up, received messages past ReceiveQueue are
// dropped at once and counted; after Stop, Propose and Step answer
// ErrStopped and Stop may be called again.
func TestReceiveQueueAndStop(t *testing.T) {
	c := newCluster(t, 1, func(cfg *Config) { cfg.ReceiveQueue = 3 })
	m := c.members[0]
	m.sm.block, m.sm.entered = make(chan struct{}), make(chan struct{})
	c.leaderOf(c.members)
	m.node.mu.Lock()
	m.node.peers[2] = "127.0.0.1:1" // a sender the member accepts
	m.node.mu.Unlock()
	if err := m.node.Propose(context.Background(), []byte("block")); err != nil {
		t.Fatal(err)
	}
	<-m.sm.entered
	msg := &pb.Message{Type: pb.MessageType_MsgHeartbeatResp.Enum(), From: new(uint64(2)), To: new(uint64(1))}
	for i := range 3 {
		if err := m.node.Step(msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
	}
	if err := m.node.Step(msg); !errors.Is(err, ErrBusy) {
		t.Fatalf("message past the queue: %v", err)
	}
	if d := m.node.Status().DroppedMessages; d != 1 {
		t.Fatalf("%d dropped messages counted, want 1", d)
	}
	close(m.sm.block)
	c.waitSame(c.members, 1)
	m.srv.Stop()
	if err := m.node.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.node.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := m.node.Propose(context.Background(), []byte("x")); !errors.Is(err, ErrStopped) && !errors.Is(err, ErrNotLeader) {
		t.Fatalf("propose after stop: %v", err)
	}
	if err := m.node.Step(msg); !errors.Is(err, ErrStopped) {
		t.Fatalf("step after stop: %v", err)
	}
	m.node = nil
}
