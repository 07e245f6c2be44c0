package node

import (
	"sync"
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
}

func newSendWatch(timeout time.Duration) *sendWatch {
	w := &sendWatch{timeout: timeout, stuck: make(chan struct{})}
	w.timer = time.AfterFunc(time.Hour, func() { w.once.Do(func() { close(w.stuck) }) })
	w.timer.Stop()
	return w
}

// watched wraps send so that each call is watched.
func (w *sendWatch) watched(send func([]*tempelv1.SignResponse, []*tempelv1.SharedRound) error) func([]*tempelv1.SignResponse, []*tempelv1.SharedRound) error {
	return func(batch []*tempelv1.SignResponse, rounds []*tempelv1.SharedRound) error {
		w.timer.Reset(w.timeout)
		defer w.timer.Stop()
		return send(batch, rounds)
	}
}

func (w *sendWatch) stop() { w.timer.Stop() }
