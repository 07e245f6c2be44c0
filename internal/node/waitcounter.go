package node

import (
	"context"
	"sync"
)

// waitCounter counts requests in flight on a stream; wait blocks until
// every one has been answered, waitBelow until fewer than a limit are.
type waitCounter struct {
	mu   sync.Mutex
	n    int
	less *sync.Cond // broadcast whenever the count drops
}

func (w *waitCounter) add() {
	w.mu.Lock()
	w.n++
	w.mu.Unlock()
}

// doneN marks n requests answered.
func (w *waitCounter) doneN(n int) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	w.n -= n
	if w.less != nil {
		w.less.Broadcast()
	}
	w.mu.Unlock()
}

func (w *waitCounter) wait() {
	w.mu.Lock()
	if w.less == nil {
		w.less = sync.NewCond(&w.mu)
	}
	for w.n > 0 {
		w.less.Wait()
	}
	w.mu.Unlock()
}

// waitBelow waits until fewer than limit are in flight; false when ctx
// ended first.
func (w *waitCounter) waitBelow(ctx context.Context, limit int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.n < limit {
		return true
	}
	if w.less == nil {
		w.less = sync.NewCond(&w.mu)
	}
	stop := context.AfterFunc(ctx, func() {
		w.mu.Lock()
		w.less.Broadcast()
		w.mu.Unlock()
	})
	defer stop()
	for w.n >= limit && ctx.Err() == nil {
		w.less.Wait()
	}
	return w.n < limit
}
