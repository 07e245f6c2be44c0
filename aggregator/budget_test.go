package aggregator

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func TestBudgetReserveRelease(t *testing.T) {
	b := NewBudget(100)
	if !b.Reserve(60) || !b.Reserve(40) {
		t.Fatal("reservations within the limit refused")
	}
	if b.Reserve(1) {
		t.Fatal("a reservation over the limit was admitted")
	}
	if b.Used() != 100 || b.Refused() != 1 {
		t.Fatalf("used %d, refused %d; want 100 and 1", b.Used(), b.Refused())
	}
	if b.Admits(1) {
		t.Fatal("Admits says yes with the budget full")
	}
	if err := b.Overloaded(); err == nil {
		t.Fatal("not overloaded right after refusing")
	}
	b.Release(40)
	if !b.Admits(40) || b.Admits(41) {
		t.Fatal("Admits does not match what is free")
	}
	if b.Used() != 60 {
		t.Fatalf("Admits took something: used %d", b.Used())
	}
	if p := b.TakePeak(); p != 100 {
		t.Fatalf("peak %d, want 100", p)
	}
	if p := b.TakePeak(); p != 60 {
		t.Fatalf("peak after TakePeak %d, want the current use 60", p)
	}
	if !errors.Is(b.Err(), ErrOverloaded) || Status(b.Err()) != 0x106 {
		t.Fatalf("refusal %v (status %#x), want ErrOverloaded and 0x106", b.Err(), Status(b.Err()))
	}
	var nilBudget *Budget
	if !nilBudget.Reserve(1<<40) || nilBudget.Overloaded() != nil {
		t.Fatal("a nil budget refuses")
	}
}

// Overload is reported for overloadHold after the last refusal, and while
// the budget is nearly full.
func TestBudgetOverloaded(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	b := NewBudget(1000)
	b.now = func() time.Time { return now }
	if err := b.Overloaded(); err != nil {
		t.Fatalf("idle budget: %v", err)
	}
	b.Reserve(950)
	if err := b.Overloaded(); err == nil {
		t.Fatal("95 % used and not overloaded")
	}
	b.Reserve(100)
	b.Release(950)
	if err := b.Overloaded(); err == nil {
		t.Fatal("not overloaded right after a refusal")
	}
	now = now.Add(overloadHold)
	if err := b.Overloaded(); err != nil {
		t.Fatalf("still overloaded %s after the last refusal: %v", overloadHold, err)
	}
}

// Concurrent reservations never exceed the limit together, and every
// admitted one is returned.
func TestBudgetConcurrent(t *testing.T) {
	const limit, workers, rounds = 1000, 8, 20000
	b := NewBudget(limit)
	var wg sync.WaitGroup
	var over sync.Once
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if b.Reserve(7) {
					if u := b.Used(); u > limit {
						over.Do(func() { t.Errorf("used %d over the limit %d", u, limit) })
					}
					b.Release(7)
				}
			}
		}()
	}
	wg.Wait()
	if b.Used() != 0 {
		t.Fatalf("%d left in use after every reservation was released", b.Used())
	}
	if b.TakePeak() > limit {
		t.Fatal("peak over the limit")
	}
}

// Every caller's cost comes back: answered, failed upstream, refused at
// submit, or gone before its answer.
func TestBudgetReturnedByCallers(t *testing.T) {
	ctx := context.Background()
	t.Run("answered", func(t *testing.T) {
		e := newEngine(t, &fakeCalendar{}, Config{Budget: NewBudget(3 * CostCaller)})
		var wg sync.WaitGroup
		for i := range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if res := e.Sign(ctx, Request{Hash: imprint(uint64(i))}); res.Err != nil {
					t.Error(res.Err)
				}
			}()
		}
		waitFor(t, "three queued callers", func() bool { return e.QueueLen() == 3 })
		// The budget is full: the next caller is refused at once.
		if res := e.Sign(ctx, Request{Hash: imprint(9)}); !errors.Is(res.Err, ErrOverloaded) {
			t.Fatalf("a caller over the budget: %v, want ErrOverloaded", res.Err)
		}
		if e.QueueLen() != 3 {
			t.Fatal("a refused caller was queued")
		}
		e.CloseRound(ctx)
		wg.Wait()
		if u := e.Budget().Used(); u != 0 {
			t.Fatalf("%d in use after every caller was answered", u)
		}
	})
	t.Run("failed", func(t *testing.T) {
		e := newEngine(t, &fakeCalendar{fail: errors.New("down")}, Config{})
		done := make(chan Signed)
		go func() { done <- e.Sign(ctx, Request{Hash: imprint(1)}) }()
		waitFor(t, "a queued caller", func() bool { return e.QueueLen() == 1 })
		e.CloseRound(ctx)
		if res := <-done; !errors.Is(res.Err, ErrUpstream) {
			t.Fatalf("%v, want ErrUpstream", res.Err)
		}
		if u := e.Budget().Used(); u != 0 {
			t.Fatalf("%d in use after the round failed", u)
		}
	})
	t.Run("bad request", func(t *testing.T) {
		e := newEngine(t, &fakeCalendar{}, Config{})
		if res := e.Sign(ctx, Request{Hash: imprint(1)[:5]}); !errors.Is(res.Err, ErrBadRequest) {
			t.Fatalf("%v, want ErrBadRequest", res.Err)
		}
		if u := e.Budget().Used(); u != 0 {
			t.Fatalf("%d in use after a refused request", u)
		}
	})
	t.Run("gone", func(t *testing.T) {
		e := newEngine(t, &fakeCalendar{}, Config{})
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan Signed)
		go func() { done <- e.Sign(cctx, Request{Hash: imprint(1)}) }()
		waitFor(t, "a queued caller", func() bool { return e.QueueLen() == 1 })
		cancel()
		if res := <-done; !errors.Is(res.Err, context.Canceled) {
			t.Fatalf("%v, want the cancellation", res.Err)
		}
		// Its stack is free at once, before its round is answered.
		if u := e.Budget().Used(); u != 0 {
			t.Fatalf("%d in use after the caller went away", u)
		}
		e.CloseRound(ctx) // the round still answers its (gone) caller
		waitFor(t, "the round to finish", func() bool { return e.Budget().Used() == 0 && e.QueueLen() == 0 })
	})
}
