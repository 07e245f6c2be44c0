package calendar

import (
	"errors"
	"testing"

	"github.com/tempel-ksi/tempel/ksi/calendarstep"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// The store writes the batches of a step computed on its own state, and
// refuses one computed on a state that is no longer current (another
// append came in between): writing it would store nodes of a different
// calendar. After reopening, the store holds the step's state.
func TestWriteRefusesStaleStep(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir)
	if _, err := s.Append(100, leafFor(100)); err != nil {
		t.Fatal(err)
	}
	stale, err := calendarstep.Second(s.State(), 105, []round.Request{{Hash: leafFor(1)}})
	if err != nil {
		t.Fatal(err)
	}
	fresh, err := calendarstep.Second(s.State(), 103, nil)
	if err != nil {
		t.Fatal(err)
	}
	root, err := writeStep(s, fresh)
	if err != nil {
		t.Fatal(err)
	}
	for b, err := range stale.Batches(2) {
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Write(b.State, b.Nodes, true); !errors.Is(err, calendartree.ErrOutOfOrder) {
			t.Fatalf("stale batch %d..%d: %v, want ErrOutOfOrder", b.T0, b.Last, err)
		}
		break
	}
	if err := s.Write(s.State(), nil, true); err == nil {
		t.Fatal("empty batch written")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	if first, last, _ := s.Head(); first != 100 || last != 103 {
		t.Fatalf("reopened calendar %d..%d, want 100..103", first, last)
	}
	got, err := s.Root(103)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Equal(root) {
		t.Fatalf("root after reopening %s, want %s", got, root)
	}
}
