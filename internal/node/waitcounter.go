package node

import (
	"context"
	"sync"
)

// waitCounter counts what a stream's requests in flight hold (bytes of
// the budget); wait blocks until every one has been answered, waitBelow
// until they hold less than a limit.
type waitCounter struct {
	mu   sync.Mutex
	n    int64
	less *sync.Cond // broadcast whenever the count drops
}

func (w *waitCounter) add(n int64) {
	w.mu.Lock()
	w.n += n
	w.mu.Unlock()
}

// doneN marks requests holding n answered.
func (w *waitCounter) doneN(n int64) {
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

// waitBelow waits until less than limit is in flight; false when ctx
// ended first.
func (w *waitCounter) waitBelow(ctx context.Context, limit int64) bool {
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
