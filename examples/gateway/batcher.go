package main

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

// errBusy: the batcher's queue is full; the caller should come back later.
var errBusy = errors.New("gateway: too many documents waiting for a timestamp")

// errStopped: the batcher no longer signs (the service is shutting down).
var errStopped = errors.New("gateway: the batcher has stopped")

// signManyFunc signs many hashes with one request; sigs[i] belongs to
// hashes[i]. (*client.Client).SignMany is one.
type signManyFunc func(ctx context.Context, hashes []ksi.Imprint) ([]*ksi.Signature, error)

// batcher turns concurrent Sign calls into one SignMany per round: the
// first hash to arrive opens a round, which closes after period or with
// max hashes, whichever comes first; the round is then signed with one
// request while the next one collects.
type batcher struct {
	signMany signManyFunc
	period   time.Duration
	max      int
	queue    chan *waiting // bounded: excess is refused with errBusy
	inflight chan struct{} // one token per round being signed
	requests atomic.Int64  // SignMany calls made
	stopped  chan struct{} // closed when run returns
}

// waiting is a caller waiting for its hash's signature.
type waiting struct {
	hash ksi.Imprint
	done chan signed // buffered: the batcher never blocks on a caller
}

type signed struct {
	sig *ksi.Signature
	err error
}

// newBatcher makes a batcher; run must be running for Sign to answer.
// At most queue callers wait, and at most rounds rounds are signed at
// once.
func newBatcher(signMany signManyFunc, period time.Duration, max, queue, rounds int) *batcher {
	return &batcher{signMany: signMany, period: period, max: max,
		queue: make(chan *waiting, queue), inflight: make(chan struct{}, rounds), stopped: make(chan struct{})}
}

// Sign returns the signature of hash, signed in the next round.
func (b *batcher) Sign(ctx context.Context, hash ksi.Imprint) (*ksi.Signature, error) {
	w := &waiting{hash: hash, done: make(chan signed, 1)}
	select {
	case b.queue <- w:
	default:
		return nil, errBusy
	}
	select {
	case r := <-w.done:
		return r.sig, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	case <-b.stopped:
		return nil, errStopped
	}
}

// run collects rounds until ctx ends; callers still waiting then fail.
func (b *batcher) run(ctx context.Context) {
	// Without this, a caller queued when ctx ended, or one arriving later,
	// would wait for an answer nobody sends.
	defer close(b.stopped)
	for {
		var round []*waiting
		select {
		case w := <-b.queue:
			round = append(round, w)
		case <-ctx.Done():
			return
		}
		t := time.NewTimer(b.period)
	collect:
		for len(round) < b.max {
			select {
			case w := <-b.queue:
				round = append(round, w)
			case <-t.C:
				break collect
			case <-ctx.Done():
				t.Stop()
				answer(round, nil, ctx.Err())
				return
			}
		}
		t.Stop()
		select {
		case b.inflight <- struct{}{}:
		case <-ctx.Done():
			answer(round, nil, ctx.Err())
			return
		}
		go func() {
			defer func() { <-b.inflight }()
			b.sign(ctx, round)
		}()
	}
}

// sign signs one round with one request and answers its callers.
func (b *batcher) sign(ctx context.Context, round []*waiting) {
	hashes := make([]ksi.Imprint, len(round))
	for i, w := range round {
		hashes[i] = w.hash
	}
	b.requests.Add(1)
	sigs, err := b.signMany(ctx, hashes)
	if err == nil && len(sigs) != len(round) {
		err = fmt.Errorf("gateway: %d signatures for %d hashes", len(sigs), len(round))
	}
	answer(round, sigs, err)
}

func answer(round []*waiting, sigs []*ksi.Signature, err error) {
	for i, w := range round {
		if err != nil {
			w.done <- signed{err: err}
			continue
		}
		w.done <- signed{sig: sigs[i]}
	}
}
