package raftnode

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

// toySM is the tests' state machine: the number of distinct non-empty
// entries applied and a running SHA-256 over them in log order, so two
// members that applied the same log agree byte for byte. It
// deduplicates by content, as the brief asks of state machines (a
// retried proposal may commit twice). It lives in memory; a test that
// restarts a member with the same toySM models a durable machine (its
// Applied survives), one that gives a new toySM models a machine that
// lost its state and is rebuilt from the log's snapshot.
type toySM struct {
	mu       sync.Mutex
	applied  uint64
	count    uint64
	digest   [32]byte
	seen     map[string]bool
	restores int
	// fetching makes snapshots carry only the count and digest: a
	// restoring member fetches the keys, in the order applied (order),
	// from a peer and checks them against the digest.
	fetching bool
	order    []string
	// lie, when set, makes ServeFetch send this key in place of the
	// first.
	lie string
	// block, when set, makes Apply of the entry "block" wait for it to
	// close; entered is closed when that Apply starts.
	block, entered chan struct{}
}

func newToySM() *toySM { return &toySM{seen: map[string]bool{}} }

func (s *toySM) Applied() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.applied
}

func (s *toySM) Apply(index uint64, data []byte) error {
	if string(data) == "block" && s.block != nil {
		close(s.entered)
		<-s.block
	}
	if string(data) == "poison" {
		return errors.New("the poison entry")
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// Entries come once each and in order: anything else is a bug in
	// the member, and failing here fails the test through Err.
	if index <= s.applied {
		return fmt.Errorf("entry %d applied again (applied %d)", index, s.applied)
	}
	s.applied = index
	if len(data) > 0 && !s.seen[string(data)] {
		s.seen[string(data)] = true
		s.order = append(s.order, string(data))
		s.count++
		s.digest = sha256.Sum256(append(s.digest[:], data...))
	}
	return nil
}

func (s *toySM) Snapshot() ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b := binary.BigEndian.AppendUint64(nil, s.count)
	b = append(b, s.digest[:]...)
	if s.fetching {
		return b, nil
	}
	keys := make([]string, 0, len(s.seen))
	for k := range s.seen {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return append(b, strings.Join(keys, "\n")...), nil
}

func (s *toySM) Restore(index uint64, data []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(data) < 40 {
		return fmt.Errorf("snapshot data of %d bytes", len(data))
	}
	s.count = binary.BigEndian.Uint64(data)
	copy(s.digest[:], data[8:40])
	s.seen = map[string]bool{}
	s.order = nil
	if len(data) > 40 {
		for _, k := range strings.Split(string(data[40:]), "\n") {
			s.seen[k] = true
		}
	}
	s.applied = index
	s.restores++
	return nil
}

func (s *toySM) state() (count uint64, digest [32]byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.count, s.digest
}

func (s *toySM) restored() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.restores
}

func (s *toySM) has(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[key]
}

// tmember is one member of a test cluster: a real gRPC server on
// loopback, its own raft log directory, a fault transport over gRPC.
type tmember struct {
	id    uint64
	addr  string
	dir   string
	sm    *toySM
	fault *FaultTransport
	node  *Node
	srv   *grpc.Server
	lis   net.Listener
	// peers, when set, replaces the cluster's address book in this
	// member's Config.
	peers map[uint64]string
}

type tcluster struct {
	t       testing.TB
	members []*tmember
	peers   map[uint64]string
	tweak   func(*Config)
	// dial and serve, when set, replace the insecure credentials.
	dial  []grpc.DialOption
	serve []grpc.ServerOption
}

// Test timing: ticks of 25 ms, an election timeout of 250 ms, short
// enough for quick failovers and long enough for a loaded machine.
const testTick = 25 * time.Millisecond

func testLogger(t testing.TB) *slog.Logger {
	if os.Getenv("RAFTNODE_LOG") != "" {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})).With("test", t.Name())
	}
	return slog.New(slog.DiscardHandler)
}

func newCluster(t testing.TB, size int, tweak func(*Config)) *tcluster {
	t.Helper()
	return newClusterWith(t, &tcluster{t: t, peers: map[uint64]string{}, tweak: tweak}, size)
}

func newClusterWith(t testing.TB, c *tcluster, size int) *tcluster {
	t.Helper()
	for i := 1; i <= size; i++ {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		m := &tmember{id: uint64(i), addr: lis.Addr().String(), dir: t.TempDir(), sm: newToySM(), lis: lis}
		c.members = append(c.members, m)
		c.peers[m.id] = m.addr
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			if m.node != nil {
				c.stop(m)
			}
		}
	})
	for _, m := range c.members {
		c.start(m)
	}
	return c
}

// start runs m from its directory, on its address.
func (c *tcluster) start(m *tmember) {
	c.t.Helper()
	if err := c.tryStart(m, false); err != nil {
		c.t.Fatalf("member %d: %v", m.id, err)
	}
}

func (c *tcluster) tryStart(m *tmember, join bool) error {
	if m.lis == nil {
		// The port was ours a moment ago; the kernel may take a
		// moment to free it.
		var err error
		waitFor(c.t, 5*time.Second, "the member's port free again", func() bool {
			m.lis, err = net.Listen("tcp", m.addr)
			return err == nil
		})
	}
	dial := c.dial
	if dial == nil {
		dial = []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}
	}
	m.fault = NewFaultTransport(NewGRPCTransport(GRPCOptions{
		DialOptions: dial,
		Logger:      testLogger(c.t),
	}), m.id)
	peers := c.peers
	if m.peers != nil {
		peers = m.peers
	}
	cfg := Config{
		ID: m.id, Peers: peers, Dir: m.dir, Join: join,
		TickInterval: testTick, Logger: testLogger(c.t),
		StateMachine: m.sm, Transport: m.fault,
	}
	if c.tweak != nil {
		c.tweak(&cfg)
	}
	n, err := Start(cfg)
	if err != nil {
		m.lis.Close()
		m.lis = nil
		return err
	}
	m.node = n
	// The node's gRPC server refuses messages past 1 MiB; so does this.
	m.srv = grpc.NewServer(append([]grpc.ServerOption{grpc.MaxRecvMsgSize(DefaultMaxMessageBytes), grpc.KeepaliveEnforcementPolicy(KeepaliveEnforcement)}, c.serve...)...)
	RegisterServer(m.srv, n)
	go m.srv.Serve(m.lis)
	return nil
}

// stop stops m cleanly; a fatal error it had fails the test.
func (c *tcluster) stop(m *tmember) {
	c.t.Helper()
	m.srv.Stop()
	if err := m.node.Stop(); err != nil {
		c.t.Errorf("member %d: stop: %v", m.id, err)
	}
	if err := m.node.Err(); err != nil && !errors.Is(err, ErrRemoved) {
		c.t.Errorf("member %d stopped on: %v", m.id, err)
	}
	m.node, m.srv, m.lis = nil, nil, nil
}

func (c *tcluster) running() []*tmember {
	var out []*tmember
	for _, m := range c.members {
		if m.node != nil {
			out = append(out, m)
		}
	}
	return out
}

func (c *tcluster) others(x *tmember) []*tmember {
	var out []*tmember
	for _, m := range c.running() {
		if m != x {
			out = append(out, m)
		}
	}
	return out
}

// waitFor polls cond until it holds, failing the test at the deadline.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	if !poll(limit, cond) {
		t.Fatalf("%s: not within %v", what, limit)
	}
}

// poll polls cond until it holds or limit passes; it reports which.
func poll(limit time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(limit)
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		<-tick.C
	}
}

// leaderOf waits until one of among leads and every member of among
// names it, and returns it.
func (c *tcluster) leaderOf(among []*tmember) *tmember {
	c.t.Helper()
	var leader *tmember
	waitFor(c.t, 10*time.Second, "a leader all members agree on", func() bool {
		leader = nil
		for _, m := range among {
			if m.node.Status().IsLeader {
				leader = m
			}
		}
		if leader == nil {
			return false
		}
		for _, m := range among {
			if m.node.Status().Leader != leader.id {
				return false
			}
		}
		return true
	})
	return leader
}

func keys(prefix string, from, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", prefix, from+i)
	}
	return out
}

// proposeAll has the leader among the members of among commit every key,
// proposing again what a leader change lost (the toySM deduplicates),
// then waits until all of among applied them. Sixteen proposers run at
// once so that proposals share synced writes.
func (c *tcluster) proposeAll(among []*tmember, ks []string) {
	c.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	pending := ks
	for len(pending) > 0 {
		if time.Now().After(deadline) {
			c.t.Fatalf("%d of %d proposals not committed in time", len(pending), len(ks))
		}
		l := c.leaderOf(among)
		var wg sync.WaitGroup
		work := make(chan string)
		for range 16 {
			wg.Go(func() {
				for k := range work {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err := l.node.Propose(ctx, []byte(k))
					cancel()
					if err != nil && !errors.Is(err, ErrNotLeader) && !errors.Is(err, ErrDropped) &&
						!errors.Is(err, ErrBusy) && !errors.Is(err, context.DeadlineExceeded) {
						c.t.Errorf("propose %s: %v", k, err)
					}
				}
			})
		}
		for _, k := range pending {
			work <- k
		}
		close(work)
		wg.Wait()
		// What the leader accepted commits unless leadership moves;
		// what it did not is proposed again in the next round.
		poll(3*time.Second, func() bool {
			return !slices.ContainsFunc(pending, func(k string) bool { return !l.sm.has(k) })
		})
		pending = slices.DeleteFunc(pending, l.sm.has)
	}
	c.waitSame(among, 0)
}

// waitSame waits until every member of among applied the same entries
// (at least min of them) and checks the digests agree.
func (c *tcluster) waitSame(among []*tmember, min uint64) {
	c.t.Helper()
	ok := poll(15*time.Second, func() bool {
		for _, m := range among {
			if m.node.Err() != nil {
				return true // reported below
			}
		}
		n0, d0 := among[0].sm.state()
		if n0 < min {
			return false
		}
		for _, m := range among[1:] {
			if n, d := m.sm.state(); n != n0 || d != d0 {
				return false
			}
		}
		return true
	})
	for _, m := range among {
		if err := m.node.Err(); err != nil {
			c.t.Fatalf("member %d: %v", m.id, err)
		}
	}
	if !ok {
		for _, m := range among {
			n, d := m.sm.state()
			c.t.Errorf("member %d: %d entries, digest %x, status %+v", m.id, n, d[:6], m.node.Status())
		}
		c.t.Fatalf("members did not agree")
	}
}
