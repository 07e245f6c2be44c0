package node

import (
	"strings"
	"testing"
	"time"
)

// Readiness names every reason the node is not ready, in one line: here
// the calendar waiting for the clock and the budget refusing requests.
func TestReadyNamesEveryReason(t *testing.T) {
	clock := &steppedClock{}
	n, _ := manualNode(t, Config{Now: clock.Now})
	if err := n.ready(); err != nil {
		t.Fatalf("ready: %v", err)
	}
	clock.step(-10 * time.Second)
	waitFor(t, 10*time.Second, "the calendar to wait for the clock", func() bool { return n.cal.Ready() != nil })
	b := n.agg.Budget()
	if !b.Reserve(b.Limit()) || b.Reserve(1) {
		t.Fatal("the budget did not fill")
	}
	defer b.Release(b.Limit())
	err := n.ready()
	if err == nil || strings.Contains(err.Error(), "\n") {
		t.Fatalf("ready: %v, want one line", err)
	}
	if strings.Count(err.Error(), "calendar: ") != 1 {
		t.Errorf("ready: %q, want \"calendar: \" once", err)
	}
	for _, want := range []string{"calendar: ", "waiting for the clock", "overloaded"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("ready: %q does not say %q", err, want)
		}
	}
}
