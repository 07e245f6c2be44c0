package raftnode

import (
	"context"
	"sync"
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// reports records what a transport tells its member.
type reports struct {
	mu          sync.Mutex
	unreachable map[uint64]int
	snapFailed  map[uint64]int
}

func newReports() *reports {
	return &reports{unreachable: map[uint64]int{}, snapFailed: map[uint64]int{}}
}

func (r *reports) ReportUnreachable(id uint64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.unreachable[id]++
}

func (r *reports) ReportSnapshot(id uint64, failed bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if failed {
		r.snapFailed[id]++
	}
}

// Messages for a member without an address, or too large, are dropped
// and reported, snapshots as failed snapshots too.
func TestGRPCTransportReportsDrops(t *testing.T) {
	tr := NewGRPCTransport(GRPCOptions{MaxMessageBytes: 1 << 10})
	r := newReports()
	if err := tr.Start(1, r); err != nil {
		t.Fatal(err)
	}
	defer tr.Stop()
	if err := tr.Start(1, r); err == nil {
		t.Fatal("started twice")
	}
	tr.Send([]*pb.Message{
		{Type: pb.MessageType_MsgApp.Enum(), From: new(uint64(1)), To: new(uint64(5))},
		{Type: pb.MessageType_MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(5))},
	})
	tr.AddPeer(2, "127.0.0.1:1")
	tr.Send([]*pb.Message{{Type: pb.MessageType_MsgSnap.Enum(), From: new(uint64(1)), To: new(uint64(2)),
		Snapshot: &pb.Snapshot{Data: make([]byte, 2<<10)}}})
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.unreachable[5] != 2 || r.snapFailed[5] != 1 {
		t.Errorf("no address: %d unreachable, %d failed snapshots; want 2 and 1", r.unreachable[5], r.snapFailed[5])
	}
	if r.unreachable[2] != 1 || r.snapFailed[2] != 1 {
		t.Errorf("too large: %d unreachable, %d failed snapshots; want 1 and 1", r.unreachable[2], r.snapFailed[2])
	}
}

// A peer's queue refuses past its count and its bytes, and empties.
func TestPeerQueueBounds(t *testing.T) {
	tr := NewGRPCTransport(GRPCOptions{PeerQueue: 3, PeerQueueBytes: 10})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Not started: nothing takes from the queue.
	p := &peer{t: tr, id: 2, queue: make(chan []byte, 3), snaps: make(chan []byte, 1), ctx: ctx, cancel: cancel}
	if !p.enqueue(make([]byte, 6), false) {
		t.Fatal("first message refused")
	}
	if p.enqueue(make([]byte, 6), false) {
		t.Fatal("accepted past the byte bound")
	}
	for range 2 {
		if !p.enqueue(make([]byte, 2), false) {
			t.Fatal("small messages refused")
		}
	}
	if p.enqueue(nil, false) {
		t.Fatal("accepted past the count bound")
	}
	if !p.enqueue(nil, true) || p.enqueue(nil, true) {
		t.Fatal("snapshot slot: want one accepted, then refused")
	}
	if b, ok := p.take(); !ok || len(b) != 6 || p.queued.Load() != 4 {
		t.Fatalf("take: %d bytes, %v; %d queued", len(b), ok, p.queued.Load())
	}
	if n := p.dropQueued(); n != 2 || p.queued.Load() != 0 {
		t.Fatalf("dropped %d, %d bytes left", n, p.queued.Load())
	}
}
