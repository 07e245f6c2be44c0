package raftnode

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"
)

// BenchmarkLearnerCatchUp86400 measures the raft side of a member a day
// behind: a leader whose log holds 86,400 entries of 100 bytes (a day
// of seconds' entries) sends them to a new member over gRPC on loopback,
// which saves them (synced) and applies them to the tests' state
// machine. The calendar's side of applying a day (the tree, Pebble) is
// calendar's BenchmarkCatchUp86400; the two add up to a day's catch-up
// (issue 13's target: under 30 s).
func BenchmarkLearnerCatchUp86400(b *testing.B) {
	const entries, size = 86_400, 100
	c := newCluster(b, 1, func(cfg *Config) { cfg.SnapshotEvery, cfg.KeepEntries = 200_000, 100_000 })
	l := c.members[0]
	work := make(chan int)
	var wg sync.WaitGroup
	for range 64 {
		wg.Go(func() {
			for i := range work {
				data := fmt.Appendf(nil, "%0*d", size, i)
				for {
					ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
					err := l.node.Propose(ctx, data)
					cancel()
					if err == nil {
						break
					}
				}
			}
		})
	}
	for i := range entries {
		work <- i
	}
	close(work)
	wg.Wait()
	waitFor(b, time.Minute, "the leader applying the day", func() bool { n, _ := l.sm.state(); return n == entries })
	ctx := context.Background()
	id := uint64(2)
	for b.Loop() {
		b.StopTimer()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		m := &tmember{id: id, addr: lis.Addr().String(), dir: b.TempDir(), sm: newToySM(), lis: lis}
		c.members = append(c.members, m)
		c.peers[id] = m.addr
		if err := c.tryStart(m, true); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		began := time.Now()
		if err := l.node.AddMember(ctx, id, m.addr); err != nil {
			b.Fatal(err)
		}
		waitFor(b, 2*time.Minute, "the new member applying the day", func() bool { n, _ := m.sm.state(); return n == entries })
		b.ReportMetric(time.Since(began).Seconds(), "s/day")
		b.StopTimer()
		if m.sm.restored() != 0 {
			b.Fatal("the new member was sent a snapshot, not the log")
		}
		if err := l.node.RemoveMember(ctx, id); err != nil {
			b.Fatal(err)
		}
		c.stop(m)
		c.members = c.members[:1]
		id++
		b.StartTimer()
	}
}
