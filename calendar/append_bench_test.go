package calendar

import (
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// BenchmarkAppend appends to a fresh store: one second per op, synced
// (the second loop's write) and not (the arithmetic and the batch without
// the fsync), and 65536 unsynced seconds per op (a gap filled after a
// restart, or bulk loading).
func BenchmarkAppend(b *testing.B) {
	leaves := make([]ksi.Imprint, 1<<16)
	for i := range leaves {
		leaves[i] = leafFor(uint64(i))
	}
	const first = 1_767_225_600
	open := func(b *testing.B) *Store {
		s, err := OpenStore(b.TempDir(), StoreOptions{Logger: discardLogger()})
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { s.Close() })
		return s
	}
	for _, tc := range []struct {
		name string
		n    int
		sync bool
	}{{"second-synced", 1, true}, {"second", 1, false}, {"range-64k", 1 << 16, false}} {
		b.Run(tc.name, func(b *testing.B) {
			s := open(b)
			t := uint64(first)
			b.ReportAllocs()
			for b.Loop() {
				batch := leaves[:tc.n]
				if tc.n == 1 {
					batch = leaves[t%uint64(len(leaves)) : t%uint64(len(leaves))+1]
				}
				if _, err := s.AppendRange(t, batch, tc.sync); err != nil {
					b.Fatal(err)
				}
				t += uint64(tc.n)
			}
			b.ReportMetric(float64(t-first)/b.Elapsed().Seconds(), "leaves/s")
		})
	}
}
