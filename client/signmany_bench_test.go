package client_test

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"syscall"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
)

// BenchmarkSignMany1M signs a million hashes with masks against a real
// node on loopback (in this process, as the tests run it), at the default
// maximum level: a masked tree at level 20 holds 2^19 leaves, so two
// requests of 500,000. Each operation ends with all
// million signatures encoded in memory and checked as SignManyEncoded
// checks them: the root signatures pass the internal policy, every
// signature's chain is recomputed from its own bytes to its root (steps
// shared with a checked neighbour compared by bytes instead of hashed
// again), its other parts compared with the verified root signature's,
// and the first and last of each request pass the full internal policy.
//
// The metrics split the time: mask-ms (masks, one goroutine), tree-ms
// (local trees), rtt-ms (round trips, summed over the concurrent
// requests), assembly-ns/leaf and check-ns/leaf (summed over the
// goroutines, two per request, so on a busy host they include waiting
// for a core), cpu-ms (the process's CPU time: client and node), and the
// signatures' size.
func BenchmarkSignMany1M(b *testing.B) {
	const n = 1_000_000
	addr := startNodeMaxLevel(b, 0)
	c, err := client.New(client.Config{Endpoints: []string{addr}})
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	hashes := make([]ksi.Imprint, n)
	arena := make([]byte, n*33)
	var in [8]byte
	for i := range hashes {
		binary.BigEndian.PutUint64(in[:], uint64(i))
		d := sha256.Sum256(in[:])
		h := arena[i*33 : (i+1)*33 : (i+1)*33]
		h[0] = byte(ksi.SHA2_256)
		copy(h[1:], d[:])
		hashes[i] = h
	}
	ctx := context.Background()
	// One small batch first: connection set up, calendar running.
	if _, err := c.SignManyEncoded(ctx, hashes[:2], client.SignManyOptions{}); err != nil {
		b.Fatal(err)
	}
	var st client.SignManyStats
	var cpu time.Duration
	var bytes, requests int
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		ru0 := cpuTime()
		res, err := c.SignManyEncoded(ctx, hashes, client.SignManyOptions{})
		if err != nil {
			b.Fatal(err)
		}
		if len(res.Signatures) != n {
			b.Fatalf("%d signatures", len(res.Signatures))
		}
		b.Logf("op %s cpu %s", time.Since(t0), cpuTime()-ru0)
		cpu += cpuTime() - ru0
		s := res.Stats
		st.Mask += s.Mask
		st.Tree += s.Tree
		st.RoundTrip += s.RoundTrip
		st.Assembly += s.Assembly
		st.Check += s.Check
		requests += res.Requests
		bytes = 0
		for _, sig := range res.Signatures {
			bytes += len(sig)
		}
	}
	ops := float64(b.N)
	b.ReportMetric(float64(st.Mask.Milliseconds())/ops, "mask-ms")
	b.ReportMetric(float64(st.Tree.Milliseconds())/ops, "tree-ms")
	b.ReportMetric(float64(st.RoundTrip.Milliseconds())/ops, "rtt-ms")
	b.ReportMetric(float64(st.Assembly.Nanoseconds())/ops/n, "assembly-ns/leaf")
	b.ReportMetric(float64(st.Check.Nanoseconds())/ops/n, "check-ns/leaf")
	b.ReportMetric(float64(requests)/ops, "requests")
	b.ReportMetric(float64(cpu.Milliseconds())/ops, "cpu-ms")
	b.ReportMetric(float64(bytes)/n, "B/sig")
}

// cpuTime is the process's CPU time so far, user and system: the client's
// and the in-process node's work, whatever else the host runs.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
