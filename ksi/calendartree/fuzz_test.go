package calendartree

import (
	"reflect"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// FuzzAppendChain appends ranges of leaves to a calendar starting at any
// second, as the input's bytes say, and after each range compares the
// root, a chain and an earlier root with the naive tree; at the end, one
// append of every leaf must give the same state and nodes. Each group of
// three bytes is (range length, where t falls, where P falls).
func FuzzAppendChain(f *testing.F) {
	f.Add(uint64(0), []byte{0, 0, 0, 6, 200, 100, 31, 17, 250})
	f.Add(uint64(1_767_225_600), []byte{63, 1, 2, 63, 128, 255, 0, 255, 255})
	f.Add(uint64(MaxSecond-20), []byte{9, 0, 255, 9, 128, 128, 9, 255, 0})
	f.Fuzz(func(t *testing.T, first uint64, ops []byte) {
		first %= MaxSecond + 1
		budget := min(uint64(512), MaxSecond-first+1)
		ref := newNaive(first)
		mem := newMemStore(t, first)
		var st State
		var all []ksi.Imprint
		var allNodes []Node
		for i := 0; i+2 < len(ops) && uint64(len(all)) < budget; i += 3 {
			n := min(uint64(ops[i]%64)+1, budget-uint64(len(all)))
			t0 := first + uint64(len(all))
			leaves := make([]ksi.Imprint, n)
			for j := range leaves {
				leaves[j] = leafAt(t0+uint64(j), ops[i+1])
			}
			next, nodes, err := Append(st, t0, leaves)
			if err != nil {
				t.Fatalf("append %d+%d from first %d: %v", t0, n, first, err)
			}
			ref.leaves = append(ref.leaves, leaves...)
			checkNodesFuzz(t, ref, t0, nodes)
			mem.write(nodes)
			all, allNodes, st = append(all, leaves...), append(allNodes, nodes...), next
			last := st.Last()
			if !st.Root().Equal(ref.root(0, last+1)) {
				t.Fatalf("root after %d (first %d): %s, want %s", last, first, st.Root(), ref.root(0, last+1))
			}
			size := last - first + 1
			tq := first + uint64(ops[i+1])*size/256
			p := tq + uint64(ops[i+2])*(last-tq+1)/256
			checkChain(t, st, mem, ref, tq, p)
			if root, err := st.RootAt(mem, p); err != nil || !root.Equal(ref.root(0, p+1)) {
				t.Fatalf("root at %d: %s, %v", p, root, err)
			}
		}
		if len(all) == 0 {
			return
		}
		loaded, err := Load(mem, first, st.Last())
		if err != nil || !reflect.DeepEqual(loaded, st) {
			t.Fatalf("load: %v", err)
		}
		once, nodes, err := Append(State{}, first, all)
		if err != nil || !reflect.DeepEqual(once, st) || !reflect.DeepEqual(nodes, allNodes) {
			t.Fatalf("one append of every leaf differs from the ranges: %v", err)
		}
	})
}

// checkNodesFuzz checks that an append returned each leaf and the nodes
// it completes, with the naive hashes.
func checkNodesFuzz(t *testing.T, ref *naive, t0 uint64, nodes []Node) {
	t.Helper()
	i := 0
	for sec := t0; sec <= ref.last(); sec++ {
		for h := 0; h <= maxHeight && (h == 0 || (sec+1)%(1<<h) == 0); h++ {
			want := NodeID{uint8(h), (sec+1)>>h - 1}
			if h == 0 {
				want = NodeID{0, sec}
			}
			if i >= len(nodes) || nodes[i].ID != want {
				t.Fatalf("append from %d: node %d is not %v", t0, i, want)
			}
			if r := ref.root(want.Index<<want.Height, want.end()); !nodes[i].Hash.Equal(r) {
				t.Fatalf("node %v: %s, want %s", want, nodes[i].Hash, r)
			}
			i++
		}
	}
	if i != len(nodes) {
		t.Fatalf("append from %d: %d nodes, want %d", t0, len(nodes), i)
	}
}
