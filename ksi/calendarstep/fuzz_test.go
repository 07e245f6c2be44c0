package calendarstep_test

import (
	"bytes"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendarstep"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// FuzzSecond feeds arbitrary roots, levels, metadata and gaps: the step
// never panics, and when it succeeds, it is deterministic and its
// batches give the same state whatever their size.
func FuzzSecond(f *testing.F) {
	f.Add(uint64(3), uint8(0), []byte{1, 2}, []byte("meta"), uint8(1))
	f.Add(uint64(0), uint8(255), []byte{}, []byte{}, uint8(7))
	f.Add(uint64(40), uint8(9), []byte{byte(ksi.SHA2_256)}, []byte(nil), uint8(0))
	f.Fuzz(func(t *testing.T, gap uint64, level uint8, raw, meta []byte, n uint8) {
		prev := stateAt(t, 5, 9)
		gap %= 300
		var roots []round.Request
		for i := range int(n % 8) {
			h := imprint(string(raw) + string(rune(i)))
			if i == 1 && len(raw) > 0 {
				h = append(ksi.Imprint(nil), raw...) // arbitrary bytes as a root
			}
			var m []byte
			if len(meta) > 0 {
				m = meta
			}
			roots = append(roots, round.Request{Hash: h, Level: level, Meta: m})
		}
		a, errA := calendarstep.Second(prev, 10+gap, roots)
		b, errB := calendarstep.Second(prev, 10+gap, roots)
		if (errA == nil) != (errB == nil) {
			t.Fatalf("not deterministic: %v / %v", errA, errB)
		}
		if errA != nil {
			return
		}
		if !bytes.Equal(a.Leaf, b.Leaf) {
			t.Fatal("leaf differs between two runs")
		}
		_, s1 := apply(t, a, 1)
		_, s2 := apply(t, b, 1<<16)
		if !bytes.Equal(s1.Root(), s2.Root()) || s1.Last() != 10+gap {
			t.Fatal("batch size changed the result")
		}
		if _, _, err := calendartree.Append(s1, s1.Last()+1, []ksi.Imprint{calendartree.EmptyLeaf()}); err != nil {
			t.Fatal(err)
		}
	})
}
