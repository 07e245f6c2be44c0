package calendartree

import (
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// BenchmarkStep applies the state-machine step for one second to a
// calendar of a month's seconds, as the second loop does (no storage).
func BenchmarkStep(b *testing.B) {
	const first = 1_767_225_600
	leaves := make([]ksi.Imprint, 1<<12)
	for i := range leaves {
		leaves[i] = leafAt(uint64(i), 7)
	}
	st, _, err := Append(State{}, first, leaves)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		next, _, err := Append(st, st.Last()+1, leaves[st.Last()%uint64(len(leaves)):][:1])
		if err != nil {
			b.Fatal(err)
		}
		st = next
	}
}

// BenchmarkChain computes chains from a calendar held in memory: the
// arithmetic of an extension without the storage's cost.
func BenchmarkChain(b *testing.B) {
	const first, n = 1_767_225_600, 1 << 14
	mem := newMemStore(b, first)
	leaves := make([]ksi.Imprint, n)
	for i := range leaves {
		leaves[i] = leafAt(uint64(i), 8)
	}
	st, nodes, err := Append(State{}, first, leaves)
	if err != nil {
		b.Fatal(err)
	}
	mem.write(nodes)
	i := uint64(0)
	b.ReportAllocs()
	for b.Loop() {
		t := first + i*7919%n
		p := t + (n-1-(t-first))/2
		if _, err := st.Chain(mem, t, p); err != nil {
			b.Fatal(err)
		}
		i++
	}
}
