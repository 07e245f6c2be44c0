package calendar

import (
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkCatchUp86400 applies a day of seconds (86,400 log entries of
// empty seconds) as a member that was a day behind receives them: in
// batches of committed entries, each followed by one Flush (one synced
// commit and one watermark write), as internal/raftnode hands them over
// (a 256 KiB append holds about 2,800 such entries). Target: under 30 s.
func BenchmarkCatchUp86400(b *testing.B) {
	const seconds, perReady = 86_400, 2_800
	for b.Loop() {
		b.StopTimer()
		dir := b.TempDir()
		st, err := OpenStore(filepath.Join(dir, "calendar"), StoreOptions{Logger: discardLogger()})
		if err != nil {
			b.Fatal(err)
		}
		w, _, err := OpenWatermark(filepath.Join(dir, "watermark"), true)
		if err != nil {
			b.Fatal(err)
		}
		svc, err := NewService(ServiceConfig{Store: st, Watermark: w, Signer: newRSASigner(b), Logger: discardLogger(), Log: &testLog{}})
		if err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
		start := time.Now()
		t0 := uint64(1_800_000_000)
		for i := uint64(0); i < seconds; i++ {
			state := st.State()
			e := SecondEntry{T: t0 + i, PrevLast: state.Last(), PrevRoot: state.Root()}
			data, err := e.Encode(nil)
			if err != nil {
				b.Fatal(err)
			}
			if err := svc.Apply(i+1, data); err != nil {
				b.Fatal(err)
			}
			if (i+1)%perReady == 0 || i+1 == seconds {
				if err := svc.Flush(); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(time.Since(start).Seconds(), "s/day")
		b.StopTimer()
		w.Close()
		st.Close()
		b.StartTimer()
	}
}
