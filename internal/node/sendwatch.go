package node

import (
	"context"
	"sync"
	"sync/atomic"
	"time"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// DefaultStreamSendTimeout ends a signing stream whose client has read
// none of its answers for this long (Config.StreamSendTimeout).
//
// Why a timeout: a stream whose client does not read holds its answers
// (up to its share of the node's budget) and the requests the transport
// has buffered for it; ending it frees both. Ten seconds is far longer
// than a client that reads at all pauses (a garbage collection, a
// network hiccup), and short enough that a few clients that stopped
// reading do not keep everyone else's requests refused for long.
const DefaultStreamSendTimeout = 10 * time.Second

func (n *Node) streamSendTimeout() time.Duration {
	if n.cfg.StreamSendTimeout > 0 {
		return n.cfg.StreamSendTimeout
	}
	return DefaultStreamSendTimeout
}

// sendWatch notices a send that makes no progress: stuck is closed once
// a send has been blocked for timeout. One timer per stream, reset
// around each send (a batch of up to maxResponseBatch answers).
type sendWatch struct {
	timeout time.Duration
	stuck   chan struct{}
	once    sync.Once
	timer   *time.Timer
	blocked *blockedSends // where a send in progress is listed (nil: nowhere)
	evicted atomic.Bool   // ended to make room (endOldest), not by the timeout
}

func newSendWatch(timeout time.Duration, blocked *blockedSends) *sendWatch {
	w := &sendWatch{timeout: timeout, stuck: make(chan struct{}), blocked: blocked}
	w.timer = time.AfterFunc(time.Hour, w.end)
	w.timer.Stop()
	return w
}

// end ends the stream as stuck.
func (w *sendWatch) end() { w.once.Do(func() { close(w.stuck) }) }

// watched wraps send so that each call is watched.
func (w *sendWatch) watched(send func([]*tempelv1.SignResponse, []*tempelv1.SharedRound) error) func([]*tempelv1.SignResponse, []*tempelv1.SharedRound) error {
	return func(batch []*tempelv1.SignResponse, rounds []*tempelv1.SharedRound) error {
		w.timer.Reset(w.timeout)
		defer w.timer.Stop()
		if w.blocked != nil {
			w.blocked.enter(w)
			defer w.blocked.leave(w)
		}
		return send(batch, rounds)
	}
}

// blockedSends lists the streams whose send is in progress, and since
// when, so that a node out of budget ends the stream blocked longest on
// its client at once (evictStuck) instead of refusing everyone else until
// that stream's own timeout: a few clients that do not read would
// otherwise take the whole budget for that long, again and again.
type blockedSends struct {
	mu    sync.Mutex
	since map[*sendWatch]time.Time // one entry per stream: bounded by the streams the budget admits
}

func newBlockedSends() *blockedSends { return &blockedSends{since: make(map[*sendWatch]time.Time)} }

func (b *blockedSends) enter(w *sendWatch) {
	b.mu.Lock()
	b.since[w] = time.Now()
	b.mu.Unlock()
}

func (b *blockedSends) leave(w *sendWatch) {
	b.mu.Lock()
	delete(b.since, w)
	b.mu.Unlock()
}

// endOldest ends the stream whose send has been blocked longest, if for
// at least min; it reports whether it ended one.
func (b *blockedSends) endOldest(min time.Duration) bool {
	b.mu.Lock()
	var oldest *sendWatch
	var at time.Time
	for w, t := range b.since {
		if oldest == nil || t.Before(at) {
			oldest, at = w, t
		}
	}
	if oldest == nil || time.Since(at) < min {
		b.mu.Unlock()
		return false
	}
	delete(b.since, oldest)
	b.mu.Unlock()
	oldest.evicted.Store(true)
	oldest.end()
	return true
}

// stuckAfter is how long a send must have been blocked before a node out
// of budget ends its stream: far longer than a client that reads at all
// takes to read a batch.
const stuckAfter = time.Second

// evictStuck runs until ctx ends: while the budget refuses requests, it
// ends the stream blocked longest on its client, one every tick.
func (n *Node) evictStuck(ctx context.Context) {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if n.overloaded() != nil {
			n.blocked.endOldest(stuckAfter)
		}
	}
}

func (w *sendWatch) stop() { w.timer.Stop() }
