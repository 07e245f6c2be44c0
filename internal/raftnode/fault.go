package raftnode

import (
	"math/rand/v2"
	"sync"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// FaultTransport wraps a Transport and loses, or delays, what this
// member sends, for tests of partitions and message loss. Lost messages
// vanish silently, as on a network that drops packets: nothing is
// reported to raft. To cut a member off in both directions, wrap every
// member's transport and partition each side.
type FaultTransport struct {
	inner Transport

	mu      sync.Mutex
	rng     *rand.Rand
	cut     map[uint64]bool
	dropAll bool
	loss    float64
	delay   time.Duration
	dropped uint64
	stopped bool
}

// NewFaultTransport wraps inner; seed makes the random losses repeatable.
func NewFaultTransport(inner Transport, seed uint64) *FaultTransport {
	return &FaultTransport{inner: inner, rng: rand.New(rand.NewPCG(seed, seed^0x5eed)), cut: map[uint64]bool{}}
}

// Partition drops every message to the given members until Heal.
func (f *FaultTransport) Partition(ids ...uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, id := range ids {
		f.cut[id] = true
	}
}

// Heal ends partitions and DropAll (loss and delay stay).
func (f *FaultTransport) Heal() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cut, f.dropAll = map[uint64]bool{}, false
}

// DropAll drops every message while on.
func (f *FaultTransport) DropAll(on bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.dropAll = on
}

// SetLoss drops each message with probability rate (0 to 1).
func (f *FaultTransport) SetLoss(rate float64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.loss = rate
}

// SetDelay holds every message for d before passing it on.
func (f *FaultTransport) SetDelay(d time.Duration) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.delay = d
}

// Dropped counts the messages dropped so far.
func (f *FaultTransport) Dropped() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.dropped
}

// Start implements Transport.
func (f *FaultTransport) Start(self uint64, r Reporter) error { return f.inner.Start(self, r) }

// AddPeer implements Transport.
func (f *FaultTransport) AddPeer(id uint64, addr string) { f.inner.AddPeer(id, addr) }

// RemovePeer implements Transport.
func (f *FaultTransport) RemovePeer(id uint64) { f.inner.RemovePeer(id) }

// Stop implements Transport; delayed messages still pending are dropped.
func (f *FaultTransport) Stop() {
	f.mu.Lock()
	f.stopped = true
	f.mu.Unlock()
	f.inner.Stop()
}

// Send implements Transport.
func (f *FaultTransport) Send(msgs []*pb.Message) {
	f.mu.Lock()
	keep := make([]*pb.Message, 0, len(msgs))
	for _, m := range msgs {
		if f.dropAll || f.cut[m.GetTo()] || (f.loss > 0 && f.rng.Float64() < f.loss) {
			f.dropped++
			continue
		}
		keep = append(keep, m)
	}
	delay, stopped := f.delay, f.stopped
	f.mu.Unlock()
	if len(keep) == 0 || stopped {
		return
	}
	if delay <= 0 {
		f.inner.Send(keep)
		return
	}
	time.AfterFunc(delay, func() {
		f.mu.Lock()
		stopped := f.stopped
		f.mu.Unlock()
		if !stopped {
			f.inner.Send(keep)
		}
	})
}
