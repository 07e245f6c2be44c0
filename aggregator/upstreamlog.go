package aggregator

import (
	"log/slog"
	"sync"
)

// upstreamLog logs upstream failures once per outage, not once per round:
// while the calendar stops (a full disk, a clock behind) every round
// fails, ten a second, and the first line says why. The end of the
// outage is logged with the number of rounds and requests that failed.
type upstreamLog struct {
	mu       sync.Mutex
	failing  bool
	rounds   int
	requests int
}

func (l *upstreamLog) failed(log *slog.Logger, err error, requests int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.failing {
		log.Warn("rounds failing upstream; logging again when one succeeds", "requests", requests, "err", err)
	}
	l.failing = true
	l.rounds++
	l.requests += requests
}

func (l *upstreamLog) ok(log *slog.Logger) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failing {
		log.Info("rounds answered upstream again", "failed_rounds", l.rounds, "failed_requests", l.requests)
	}
	l.failing, l.rounds, l.requests = false, 0, 0
}
