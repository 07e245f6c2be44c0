package calendar

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

// benchStore builds (once per process) a store holding 30 days of seconds
// from synthetic leaves, outside any benchmark timer.
var benchStore struct {
	dir        string
	first      uint64
	last       uint64
	buildRate  float64 // leaves/s
	bytesPerS  float64 // bytes on disk per second of calendar
	buildError error
}

const thirtyDays = 30 * 24 * 3600

func buildBenchStore(b *testing.B) {
	b.Helper()
	if benchStore.dir != "" || benchStore.buildError != nil {
		if benchStore.buildError != nil {
			b.Fatal(benchStore.buildError)
		}
		return
	}
	dir, err := os.MkdirTemp("", "tempel-bench-calendar-")
	if err != nil {
		b.Fatal(err)
	}
	s, err := OpenStore(dir, StoreOptions{Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	const first = 1_767_225_600 // 2026-01-01T00:00:00Z
	const chunk = 1 << 16
	leaves := make([]ksi.Imprint, chunk)
	r := rand.New(rand.NewPCG(7, 7))
	start := time.Now()
	for t0 := uint64(first); t0 < first+thirtyDays; t0 += chunk {
		n := min(chunk, first+thirtyDays-t0)
		for i := range leaves[:n] {
			l := make(ksi.Imprint, imprintLen)
			l[0] = 1
			for j := 1; j < imprintLen; j += 8 {
				v := r.Uint64()
				for k := 0; k < 8 && j+k < imprintLen; k++ {
					l[j+k] = byte(v >> (8 * k))
				}
			}
			leaves[i] = l
		}
		if _, err := s.AppendRange(t0, leaves[:n], t0+n >= first+thirtyDays); err != nil {
			b.Fatal(err)
		}
	}
	benchStore.buildRate = thirtyDays / time.Since(start).Seconds()
	if err := s.db.Flush(); err != nil {
		b.Fatal(err)
	}
	// Settle the LSM as a long-running calendar's background compactions
	// would, so the timed reads do not compete with the bulk load's
	// compactions.
	if err := s.db.Compact(context.Background(), []byte{0}, []byte{0xff}, true); err != nil {
		b.Fatal(err)
	}
	s.Close()
	var size int64
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			size += fi.Size()
		}
		return nil
	})
	benchStore.dir, benchStore.first, benchStore.last = dir, first, first+thirtyDays-1
	benchStore.bytesPerS = float64(size) / thirtyDays
}

// BenchmarkExtend30Days extends random signatures (leaf t to a random later
// root) from a store holding 30 days of seconds, with Pebble's block cache
// smaller than the store (64 MiB) and holding it (256 MiB, the default).
func BenchmarkExtend30Days(b *testing.B) {
	buildBenchStore(b)
	for _, cache := range []int64{64 << 20, 256 << 20} {
		b.Run(fmt.Sprintf("cache=%dMiB", cache>>20), func(b *testing.B) { benchExtend(b, cache) })
	}
}

func benchExtend(b *testing.B, cacheBytes int64) {
	s, err := OpenStore(benchStore.dir, StoreOptions{Logger: discardLogger(), CacheBytes: cacheBytes})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	span := benchStore.last - benchStore.first + 1
	reads0 := s.Reads()
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		t := benchStore.first + r.Uint64N(span)
		p := t + r.Uint64N(benchStore.last-t+1)
		if _, err := s.Chain(t, p); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.Reads()-reads0)/float64(b.N), "reads/op")
	b.ReportMetric(benchStore.buildRate, "build-leaves/s")
	b.ReportMetric(benchStore.bytesPerS, "disk-B/s-of-calendar")
	b.ReportMetric(benchStore.bytesPerS*10*365.25*86400/1e9, "GB-per-10y")
}

// BenchmarkRoot30Days computes the root at a random second.
func BenchmarkRoot30Days(b *testing.B) {
	buildBenchStore(b)
	s, err := OpenStore(benchStore.dir, StoreOptions{Logger: discardLogger()})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(3, 4))
	reads0 := s.Reads()
	for b.Loop() {
		if _, err := s.Root(benchStore.first + r.Uint64N(thirtyDays)); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(s.Reads()-reads0)/float64(b.N), "reads/op")
}

// BenchmarkOpen30Days measures open-to-ready of the 30-day store: the
// work is the O(log t) consistency check, independent of the calendar's age.
func BenchmarkOpen30Days(b *testing.B) {
	buildBenchStore(b)
	for b.Loop() {
		s, err := OpenStore(benchStore.dir, StoreOptions{Logger: discardLogger()})
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}
