package aggregator

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// A round answered late caps the callers of the rounds after it at three
// quarters of its own; the cap grows again by an eighth after each round
// that reached it and was answered in time. Streamed requests are not
// capped.
func TestCallersCappedAfterALateRound(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Unix(1_800_000_000, 0).UnixNano())
	now := func() time.Time { return time.Unix(0, clock.Load()) }
	e := newEngine(t, &fakeCalendar{}, Config{Now: now, Period: 100 * time.Millisecond})
	ctx := context.Background()
	// round submits k callers and returns how many were refused as
	// overloaded, once the round has been answered (after late).
	round := func(k int, late time.Duration) (refused int) {
		var wg sync.WaitGroup
		var mu sync.Mutex
		queued := e.QueueLen()
		admitted := 0
		for i := range k {
			c, err := e.submitCaller(Request{Hash: imprint(uint64(i))})
			if err != nil {
				if !errors.Is(err, ErrOverloaded) {
					t.Fatalf("caller %d: %v, want ErrOverloaded", i, err)
				}
				refused++
				continue
			}
			admitted++
			wg.Add(1)
			go func() {
				defer wg.Done()
				if res := c.wait(ctx); res.Err != nil {
					mu.Lock()
					t.Error(res.Err)
					mu.Unlock()
				}
			}()
		}
		if e.QueueLen() != queued+admitted {
			t.Fatalf("queue %d, want %d", e.QueueLen(), queued+admitted)
		}
		clock.Add(int64(late))
		e.CloseRound(ctx)
		wg.Wait()
		waitFor(t, "the round to be done", func() bool { return e.answering.Load() == 0 })
		return refused
	}
	if r := round(100, 50*time.Millisecond); r != 0 {
		t.Fatalf("%d refused before any round was late", r)
	}
	if r := round(100, 2*time.Second); r != 0 {
		t.Fatalf("%d refused in the late round itself", r)
	}
	// Capped at 75.
	if r := round(100, 50*time.Millisecond); r != 25 {
		t.Fatalf("%d of 100 refused after a late round of 100 callers, want 25", r)
	}
	// Answered in time at its cap: the cap grows to 75 + 16.
	if r := round(100, 50*time.Millisecond); r != 100-91 {
		t.Fatalf("%d of 100 refused, want %d", r, 100-91)
	}
	// Streamed requests are not capped.
	for i := range 200 {
		if err := e.Submit(Request{Hash: imprint(uint64(i))}, func(Result) {}); err != nil {
			t.Fatalf("streamed request %d: %v", i, err)
		}
	}
}
