package calendartree

import (
	"errors"
	"math/rand/v2"
	"reflect"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// TestAgainstNaive appends every size of calendar up to 300 seconds, one
// second at a time, for several first seconds, and after each append
// compares with the naive tree: the root, the nodes to store (exactly
// the perfect subtrees the new leaf completes), Load from the stored
// nodes, and the chain from every leaf t to the new root with the root
// itself. Finally, from the whole calendar, every chain from every t to
// every earlier root P.
func TestAgainstNaive(t *testing.T) {
	const size = 300
	for _, first := range []uint64{0, 1, 255, 1_767_225_600, MaxSecond - size + 1} {
		ref := newNaive(first)
		mem := newMemStore(t, first)
		var st State
		for sec := first; sec < first+size; sec++ {
			leaf := leafAt(sec, 0)
			ref.leaves = append(ref.leaves, leaf)
			next, nodes, err := Append(st, sec, []ksi.Imprint{leaf})
			if err != nil {
				t.Fatalf("first %d: append %d: %v", first, sec, err)
			}
			checkNodes(t, ref, sec, sec, nodes)
			mem.write(nodes)
			st = next
			if st.First() != first || st.Last() != sec || st.Empty() {
				t.Fatalf("state after %d: first %d last %d empty %v", sec, st.First(), st.Last(), st.Empty())
			}
			if want := ref.root(0, sec+1); !st.Root().Equal(want) {
				t.Fatalf("first %d: root after %d: %s, want %s", first, sec, st.Root(), want)
			}
			loaded, err := Load(mem, first, sec)
			if err != nil || !reflect.DeepEqual(loaded, st) {
				t.Fatalf("first %d: load at %d: %v\n%+v\nwant %+v", first, sec, err, loaded, st)
			}
			if root, err := st.RootAt(mem, sec); err != nil || !root.Equal(st.Root()) {
				t.Fatalf("first %d: RootAt(%d) = %s, %v", first, sec, root, err)
			}
			for t0 := first; t0 <= sec; t0++ {
				checkChain(t, st, mem, ref, t0, sec)
			}
		}
		// Earlier roots from the whole calendar: the nodes read are the
		// same, the answers must be too (every P, a sample of them for
		// every t: each (t, P) was checked above when P was the last).
		for p := first; p < first+size; p++ {
			if root, err := st.RootAt(mem, p); err != nil || !root.Equal(ref.root(0, p+1)) {
				t.Fatalf("first %d: RootAt(%d) = %s, %v", first, p, root, err)
			}
			if p%8 != 0 {
				continue
			}
			for t0 := first; t0 <= p; t0++ {
				checkChain(t, st, mem, ref, t0, p)
			}
		}
		for sec := first; sec < first+size; sec++ {
			if l, err := st.Leaf(mem, sec); err != nil || !l.Equal(ref.root(sec, sec+1)) {
				t.Fatalf("leaf %d: %s, %v", sec, l, err)
			}
		}
	}
}

// checkNodes checks the nodes an append of t0..last returned: each leaf,
// then each perfect subtree it completes, bottom up, with the naive hash.
func checkNodes(t *testing.T, ref *naive, t0, last uint64, nodes []Node) {
	t.Helper()
	var want []NodeID
	for sec := t0; sec <= last; sec++ {
		want = append(want, NodeID{0, sec})
		for h := 1; h <= maxHeight && (sec+1)%(1<<h) == 0; h++ {
			want = append(want, NodeID{uint8(h), (sec+1)>>h - 1})
		}
	}
	if len(nodes) != len(want) {
		t.Fatalf("append %d..%d (first %d): %d nodes, want %d", t0, last, ref.first, len(nodes), len(want))
	}
	for i, n := range nodes {
		if n.ID != want[i] {
			t.Fatalf("append %d..%d: node %d is %v, want %v", t0, last, i, n.ID, want[i])
		}
		start := n.ID.Index << n.ID.Height
		if r := ref.root(start, n.ID.end()); !n.Hash.Equal(r) {
			t.Fatalf("node %v: %s, want %s", n.ID, n.Hash, r)
		}
	}
}

// TestAppendRangeIsRepeatedAppend: appending a range gives the state and
// the nodes that appending its seconds one at a time gives.
func TestAppendRangeIsRepeatedAppend(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 5))
	for _, first := range []uint64{0, 3, 1000, 1_767_225_600} {
		var one, many State
		var oneNodes, manyNodes []Node
		sec := first
		for sec < first+2000 {
			n := 1 + r.IntN(70)
			leaves := make([]ksi.Imprint, n)
			for i := range leaves {
				leaves[i] = leafAt(sec+uint64(i), 1)
				next, nodes, err := Append(one, sec+uint64(i), leaves[i:i+1])
				if err != nil {
					t.Fatal(err)
				}
				one, oneNodes = next, append(oneNodes, nodes...)
			}
			next, nodes, err := Append(many, sec, leaves)
			if err != nil {
				t.Fatal(err)
			}
			many, manyNodes = next, append(manyNodes, nodes...)
			if !reflect.DeepEqual(one, many) {
				t.Fatalf("first %d: after %d, range state differs from one by one", first, sec+uint64(n)-1)
			}
			sec += uint64(n)
		}
		if !reflect.DeepEqual(oneNodes, manyNodes) {
			t.Fatalf("first %d: range appends wrote other nodes than single appends", first)
		}
	}
}

// TestAppendDoesNotChangeItsInput: a State is a value; an append, failed
// or not, leaves the one it was given as it was, and the caller's leaves
// may be reused.
func TestAppendDoesNotChangeItsInput(t *testing.T) {
	st, _, err := Append(State{}, 10, []ksi.Imprint{leafAt(10, 2), leafAt(11, 2), leafAt(12, 2)})
	if err != nil {
		t.Fatal(err)
	}
	before := st
	peaks := append([]Node(nil), st.peaks...)
	buf := []ksi.Imprint{append(ksi.Imprint(nil), leafAt(13, 2)...)}
	next, nodes, err := Append(st, 13, buf)
	if err != nil {
		t.Fatal(err)
	}
	buf[0][5] ^= 1 // the caller reuses its buffer
	if !reflect.DeepEqual(st, before) || !reflect.DeepEqual(st.peaks, peaks) {
		t.Fatal("append changed the state it was given")
	}
	if !nodes[0].Hash.Equal(leafAt(13, 2)) {
		t.Fatal("the leaf to store shares the caller's buffer")
	}
	again, _, err := Append(st, 13, []ksi.Imprint{leafAt(13, 2)})
	if err != nil || !reflect.DeepEqual(again, next) {
		t.Fatalf("the same step from the same state differs: %v", err)
	}
	if _, _, err := Append(st, 15, []ksi.Imprint{leafAt(15, 2)}); err == nil || !reflect.DeepEqual(st, before) {
		t.Fatalf("failed append: %v, state changed %v", err, !reflect.DeepEqual(st, before))
	}
}

func TestAppendRejects(t *testing.T) {
	st, _, err := Append(State{}, 100, []ksi.Imprint{leafAt(100, 3)})
	if err != nil {
		t.Fatal(err)
	}
	good := leafAt(101, 3)
	sha512 := append(ksi.Imprint{byte(ksi.SHA2_512)}, make([]byte, 64)...)
	wrongAlg := append(ksi.Imprint{byte(ksi.SHA3_256)}, good[1:]...)
	for _, tc := range []struct {
		name   string
		t0     uint64
		leaves []ksi.Imprint
		want   error
	}{
		{"same second", 100, []ksi.Imprint{good}, ErrOutOfOrder},
		{"earlier second", 99, []ksi.Imprint{good}, ErrOutOfOrder},
		{"gap", 102, []ksi.Imprint{good}, ErrOutOfOrder},
		{"short leaf", 101, []ksi.Imprint{{1, 2, 3}}, ErrBadLeaf},
		{"nil leaf", 101, []ksi.Imprint{nil}, ErrBadLeaf},
		{"other algorithm", 101, []ksi.Imprint{wrongAlg}, ErrBadLeaf},
		{"sha-512 leaf", 101, []ksi.Imprint{sha512}, ErrBadLeaf},
		{"bad leaf inside a range", 101, []ksi.Imprint{good, good, {1}}, ErrBadLeaf},
		{"no leaves", 101, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, nodes, err := Append(st, tc.t0, tc.leaves)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Fatalf("append: %v, want %v", err, tc.want)
			}
			if nodes != nil {
				t.Fatalf("a refused append returned %d nodes to store", len(nodes))
			}
		})
	}
	// The last second a calendar may hold.
	top, nodes, err := Append(State{}, MaxSecond-1, []ksi.Imprint{good, good})
	if err != nil || len(nodes) != 2+63 { // the two leaves complete the tree of height 63
		t.Fatalf("append up to MaxSecond: %v, %d nodes", err, len(nodes))
	}
	if _, _, err := Append(top, MaxSecond+1, []ksi.Imprint{good}); !errors.Is(err, ErrRange) {
		t.Fatalf("append past MaxSecond: %v", err)
	}
	if _, _, err := Append(State{}, MaxSecond, []ksi.Imprint{good, good}); !errors.Is(err, ErrRange) {
		t.Fatalf("range across MaxSecond: %v", err)
	}
	if _, _, err := Append(State{}, 1<<64-1, []ksi.Imprint{good}); !errors.Is(err, ErrRange) {
		t.Fatalf("append at 2^64-1: %v", err)
	}
}

func TestReadsRefused(t *testing.T) {
	mem := newMemStore(t, 50)
	st, nodes, err := Append(State{}, 50, []ksi.Imprint{leafAt(50, 4), leafAt(51, 4), leafAt(52, 4)})
	if err != nil {
		t.Fatal(err)
	}
	mem.write(nodes)
	for _, tc := range []struct {
		name string
		t, p uint64
	}{{"before first", 49, 51}, {"after last", 51, 53}, {"root before leaf", 52, 51}} {
		if _, err := st.Chain(mem, tc.t, tc.p); !errors.Is(err, ErrRange) {
			t.Errorf("chain %s: %v", tc.name, err)
		}
	}
	if _, err := st.RootAt(mem, 53); !errors.Is(err, ErrRange) {
		t.Errorf("root after last: %v", err)
	}
	if _, err := st.Leaf(mem, 49); !errors.Is(err, ErrRange) {
		t.Errorf("leaf before first: %v", err)
	}
	if _, err := (State{}).Chain(mem, 0, 0); !errors.Is(err, ErrRange) {
		t.Errorf("chain of the empty calendar: %v", err)
	}
	if _, err := Load(mem, 52, 51); !errors.Is(err, ErrRange) {
		t.Errorf("load of last < first: %v", err)
	}
}

// badReader answers ReadNodes as its fields say.
type badReader struct {
	mem   *memStore
	err   error
	hole  bool // leaves the last hash unset
	alter func(ksi.Imprint) ksi.Imprint
}

func (b badReader) ReadNodes(ids []NodeID, out []ksi.Imprint) error {
	if b.err != nil {
		return b.err
	}
	if err := b.mem.ReadNodes(ids, out); err != nil {
		return err
	}
	if b.hole {
		out[len(out)-1] = nil
	}
	if b.alter != nil {
		for i := range out {
			out[i] = b.alter(out[i])
		}
	}
	return nil
}

// TestStorageFaults: what the reader returns is checked, and its errors
// reach the caller unchanged.
func TestStorageFaults(t *testing.T) {
	mem := newMemStore(t, 1000)
	var leaves []ksi.Imprint
	for sec := uint64(1000); sec < 1021; sec++ {
		leaves = append(leaves, leafAt(sec, 5))
	}
	st, nodes, err := Append(State{}, 1000, leaves)
	if err != nil {
		t.Fatal(err)
	}
	mem.write(nodes)
	ioErr := errors.New("disk on fire")
	for _, tc := range []struct {
		name string
		r    badReader
		want error
	}{
		{"reader error", badReader{mem: mem, err: ioErr}, ioErr},
		{"a hash left unset", badReader{mem: mem, hole: true}, ErrBadNode},
		{"truncated hash", badReader{mem: mem, alter: func(h ksi.Imprint) ksi.Imprint { return h[:20] }}, ErrBadNode},
		{"other algorithm", badReader{mem: mem, alter: func(h ksi.Imprint) ksi.Imprint {
			return append(ksi.Imprint{byte(ksi.SHA3_256)}, h[1:]...)
		}}, ErrBadNode},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := st.Chain(tc.r, 1003, 1020); !errors.Is(err, tc.want) {
				t.Errorf("chain: %v, want %v", err, tc.want)
			}
			if _, err := st.RootAt(tc.r, 1010); !errors.Is(err, tc.want) {
				t.Errorf("root: %v, want %v", err, tc.want)
			}
			if _, err := Load(tc.r, 1000, 1020); !errors.Is(err, tc.want) {
				t.Errorf("load: %v, want %v", err, tc.want)
			}
		})
	}
	// A peak that is not the hash of its children: the nodes an append
	// would build on are damaged.
	damaged := newMemStore(t, 1000)
	damaged.write(nodes)
	damaged.nodes[NodeID{2, 1016 >> 2}] = leafAt(2, 5) // the peak over 1016..1019
	if _, err := Load(damaged, 1000, 1020); !errors.Is(err, ErrBadNode) {
		t.Errorf("load with a damaged peak: %v, want ErrBadNode", err)
	}
}

func TestEmptyLeafAndNodeHash(t *testing.T) {
	e := EmptyLeaf()
	if !e.Equal(append(ksi.Imprint{byte(ksi.SHA2_256)}, make([]byte, 32)...)) {
		t.Fatalf("EmptyLeaf = %s", e)
	}
	e[1] = 9 // a copy: the package's own is unchanged
	if !EmptyLeaf().Equal(newNaive(0).emptyRoot(1)) {
		t.Fatal("EmptyLeaf shares its bytes with callers")
	}
	l, r := leafAt(1, 6), leafAt(2, 6)
	if got, err := NodeHash(l, r); err != nil || !got.Equal(naiveStep(l, r)) {
		t.Fatalf("NodeHash = %s, %v; want %s", got, err, naiveStep(l, r))
	}
	for h := range empty {
		if want := newNaive(1 << 63).emptyRoot(1 << h); !empty[h].Equal(want) {
			t.Fatalf("empty subtree of height %d: %s, want %s", h, empty[h], want)
		}
	}
}
