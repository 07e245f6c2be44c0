package calendarstep_test

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendarstep"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
	"github.com/tempel-ksi/tempel/ksi/round"
)

func imprint(s string) ksi.Imprint {
	h := sha256.Sum256([]byte(s))
	return append(ksi.Imprint{byte(ksi.SHA2_256)}, h[:]...)
}

// stateAt appends seconds first..last with distinct leaves.
func stateAt(t *testing.T, first, last uint64) calendartree.State {
	t.Helper()
	var leaves []ksi.Imprint
	for s := first; s <= last; s++ {
		leaves = append(leaves, imprint(fmt.Sprint("leaf ", s)))
	}
	st, _, err := calendartree.Append(calendartree.State{}, first, leaves)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// apply runs every batch of the step and returns the nodes in order and
// the final state, checking that batches are contiguous and bounded.
func apply(t *testing.T, st calendarstep.Step, maxLeaves int) ([]calendartree.Node, calendartree.State) {
	t.Helper()
	var nodes []calendartree.Node
	var final calendartree.State
	next := st.From
	for b, err := range st.Batches(maxLeaves) {
		if err != nil {
			t.Fatal(err)
		}
		if b.T0 != next || b.Last < b.T0 || b.Last-b.T0+1 > uint64(max(maxLeaves, 1)) {
			t.Fatalf("batch %d..%d after %d (max %d leaves)", b.T0, b.Last, next, maxLeaves)
		}
		if b.State.Last() != b.Last {
			t.Fatalf("batch ending %d has state ending %d", b.Last, b.State.Last())
		}
		nodes = append(nodes, b.Nodes...)
		final, next = b.State, b.Last+1
	}
	if next != st.T+1 {
		t.Fatalf("batches ended before %d, want through %d", next, st.T)
	}
	return nodes, final
}

// TestSecondIsAppendOfFilledLeaves checks the step against its
// definition on every small calendar, every gap and every batch size:
// the nodes and state are those of appending the empty leaf for each
// missed second and then the round root, in one call.
func TestSecondIsAppendOfFilledLeaves(t *testing.T) {
	roots := []round.Request{{Hash: imprint("a")}, {Hash: imprint("b"), Level: 3}, {Hash: imprint("c"), Meta: []byte("meta")}}
	for first := uint64(0); first < 5; first++ {
		for last := first; last < 12; last++ {
			prev := stateAt(t, first, last)
			for gap := uint64(0); gap < 9; gap++ {
				sec := last + 1 + gap
				for _, rs := range [][]round.Request{nil, roots[:1], roots} {
					st, err := calendarstep.Second(prev, sec, rs)
					if err != nil {
						t.Fatal(err)
					}
					if st.From != last+1 || st.Leaves() != gap+1 {
						t.Fatalf("from %d leaves %d, want %d and %d", st.From, st.Leaves(), last+1, gap+1)
					}
					leaves := make([]ksi.Imprint, gap+1)
					for i := range leaves {
						leaves[i] = calendartree.EmptyLeaf()
					}
					if rs != nil {
						r, err := round.Build(calendartree.Alg, rs)
						if err != nil {
							t.Fatal(err)
						}
						leaves[gap], _ = r.Root()
						if st.Round == nil || st.Round.Len() != len(rs) {
							t.Fatal("step lost its round")
						}
					} else if st.Round != nil {
						t.Fatal("round for a second without roots")
					}
					if !bytes.Equal(st.Leaf, leaves[gap]) {
						t.Fatalf("leaf %x, want %x", st.Leaf, leaves[gap])
					}
					want, wantNodes, err := calendartree.Append(prev, last+1, leaves)
					if err != nil {
						t.Fatal(err)
					}
					for _, maxLeaves := range []int{0, 1, 2, 3, 1 << 16} {
						nodes, got := apply(t, st, maxLeaves)
						if !bytes.Equal(got.Root(), want.Root()) || got.First() != want.First() || got.Last() != sec {
							t.Fatalf("first %d last %d sec %d batch %d: state differs", first, last, sec, maxLeaves)
						}
						if len(nodes) != len(wantNodes) {
							t.Fatalf("%d nodes, want %d", len(nodes), len(wantNodes))
						}
						for i := range nodes {
							if nodes[i].ID != wantNodes[i].ID || !bytes.Equal(nodes[i].Hash, wantNodes[i].Hash) {
								t.Fatalf("node %d: %v, want %v", i, nodes[i].ID, wantNodes[i].ID)
							}
						}
					}
				}
			}
		}
	}
}

func TestFirstSecond(t *testing.T) {
	st, err := calendarstep.Second(calendartree.State{}, 1_700_000_000, []round.Request{{Hash: imprint("x")}})
	if err != nil {
		t.Fatal(err)
	}
	if st.From != st.T || st.Leaves() != 1 {
		t.Fatalf("empty calendar: from %d to %d", st.From, st.T)
	}
	_, s := apply(t, st, 1)
	if s.First() != st.T || s.Last() != st.T {
		t.Fatalf("calendar %d..%d", s.First(), s.Last())
	}
}

func TestRefusals(t *testing.T) {
	prev := stateAt(t, 10, 20)
	for _, sec := range []uint64{0, 10, 19, 20} {
		if _, err := calendarstep.Second(prev, sec, nil); !errors.Is(err, calendarstep.ErrClosed) {
			t.Errorf("second %d on a calendar ending at 20: %v, want ErrClosed", sec, err)
		}
	}
	if _, err := calendarstep.Second(prev, calendartree.MaxSecond+1, nil); !errors.Is(err, calendartree.ErrRange) {
		t.Errorf("second past MaxSecond: %v", err)
	}
	sha512 := append(ksi.Imprint{byte(ksi.SHA2_512)}, make([]byte, 64)...)
	for _, bad := range []ksi.Imprint{nil, sha512, imprint("x")[:20]} {
		if _, err := calendarstep.Second(prev, 21, []round.Request{{Hash: imprint("ok")}, {Hash: bad}}); !errors.Is(err, calendartree.ErrBadLeaf) {
			t.Errorf("root %x: %v, want ErrBadLeaf", bad, err)
		}
	}
	if _, err := calendarstep.Second(prev, 21, []round.Request{{Hash: imprint("x"), Level: 0xFF, Meta: []byte("m")}}); err == nil {
		t.Error("a root whose level leaves no room was accepted")
	}
}

// A caller that stops storing stops the batches.
func TestBatchesStop(t *testing.T) {
	st, err := calendarstep.Second(stateAt(t, 0, 3), 100, nil)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for range st.Batches(10) {
		n++
		break
	}
	if n != 1 {
		t.Fatalf("%d batches after break", n)
	}
}
