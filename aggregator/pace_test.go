package aggregator

import (
	"testing"
	"time"
)

// A node that refuses requests holds parked callers to PaceWait of the
// rate it answers them at (not less than half its budget); a node that
// refuses nothing is bounded by its memory budget alone.
func TestBudgetCallersPacedByAnswerRate(t *testing.T) {
	for _, tc := range []struct {
		name     string
		perSec   int  // callers answered in each window
		refusing bool // the node refused a request in each window
		want     int  // callers that fit at once afterwards
	}{
		{"refusing, slow", 100, true, 500},                    // floor: half the budget
		{"refusing, fast", 700, true, 840},                    // 1.2 s of 700/s
		{"not refusing", 700, false, 1000},                    // the whole budget
		{"refusing, faster than the budget", 900, true, 1000}, // the budget bounds the rate's limit
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBudget(1000 * CostCaller)
			now := time.Unix(1000, 0)
			b.now = func() time.Time { return now }
			for range 4 {
				for range tc.perSec {
					if !b.ReserveCaller() {
						t.Fatal("a caller refused while the budget was empty")
					}
					b.ReleaseCaller()
				}
				if tc.refusing {
					b.refuse()
				}
				now = now.Add(PaceWindow)
			}
			n := 0
			for b.ReserveCaller() {
				n++
				if n > 2000 {
					t.Fatal("callers admitted without bound")
				}
			}
			if n < tc.want-1 || n > tc.want { // the rate is a float64 {
				t.Fatalf("%d callers fit, want %d", n, tc.want)
			}
			for range n {
				b.ReleaseCaller()
			}
			if b.Used() != 0 {
				t.Fatalf("%d bytes left in use", b.Used())
			}
		})
	}
}

// A node that stops refusing is bounded by its budget alone again from
// the next window on.
func TestBudgetPaceEndsWithTheOverload(t *testing.T) {
	b := NewBudget(1000 * CostCaller)
	now := time.Unix(1000, 0)
	b.now = func() time.Time { return now }
	window := func(refuse bool) {
		for range 100 {
			b.ReserveCaller()
			b.ReleaseCaller()
		}
		if refuse {
			b.refuse()
		}
		now = now.Add(PaceWindow)
	}
	for range 3 {
		window(true)
	}
	if b.AdmitsCaller(); b.callerLimit() != 500*CostCaller {
		t.Fatalf("limit %d while refusing, want %d", b.callerLimit(), 500*CostCaller)
	}
	window(false)
	b.AdmitsCaller() // the window ends
	if l := b.callerLimit(); l != 1000*CostCaller {
		t.Fatalf("limit %d after a window without refusals, want the budget %d", l, 1000*CostCaller)
	}
}
