package node

import "sync"

// waitCounter counts requests in flight on a stream; wait blocks until
// every one has been answered.
type waitCounter struct {
	mu   sync.Mutex
	n    int
	zero *sync.Cond
}

func (w *waitCounter) add() {
	w.mu.Lock()
	w.n++
	w.mu.Unlock()
}

func (w *waitCounter) done() { w.doneN(1) }

// count returns the number in flight.
func (w *waitCounter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.n
}

// doneN marks n requests answered.
func (w *waitCounter) doneN(n int) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	w.n -= n
	if w.n == 0 && w.zero != nil {
		w.zero.Broadcast()
	}
	w.mu.Unlock()
}

func (w *waitCounter) wait() {
	w.mu.Lock()
	if w.zero == nil {
		w.zero = sync.NewCond(&w.mu)
	}
	for w.n > 0 {
		w.zero.Wait()
	}
	w.mu.Unlock()
}
