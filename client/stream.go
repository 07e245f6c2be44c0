package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"time"

	"google.golang.org/grpc"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// Stream signs hashes over one SignBatchStream call, for callers with
// high request rates: no per-request round trip setup, requests sent in
// batches as they come, answers matched to requests by id whatever their
// order. It is safe for concurrent use.
//
// It asks for the shared-round form: each request's own part of its
// signature arrives as soon as its round closes, the part a round shares
// once per round when the calendar has answered, and the stream joins
// them into the complete signature (a ksi/round.Joiner). So a
// signature costs the server and the network about a third of its bytes.
//
// Internally one goroutine sends requests and another reads answers and
// hands each to its waiting caller.
type Stream struct {
	endpoint string
	timeout  time.Duration
	st       grpc.BidiStreamingClient[tempelv1.SignBatch, tempelv1.SignResponseBatch]
	cancel   context.CancelFunc

	sendq chan *tempelv1.SignRequest // never full: bounded by slots
	slots chan struct{}              // one token per outstanding request
	done  chan struct{}              // closed when the reader has stopped
	idle  chan struct{}              // closed when closing and nothing is outstanding

	mu         sync.Mutex
	next       uint64
	pending    map[uint64]*pendingSign
	closing    bool
	idleClosed bool
	err        error // why the stream ended

	closeOnce sync.Once
}

// pendingSign is a request waiting for its answer (in the shared-round
// form its leg waits in the reader's joiner).
type pendingSign struct {
	cb   func(sig []byte, err error)
	hash ksi.Imprint
}

// maxSendBatch bounds the requests of one SignBatch message.
const maxSendBatch = 512

// Stream opens a signing stream at the first available endpoint. The
// stream lives until Close or until ctx is cancelled.
func (c *Client) Stream(ctx context.Context) (*Stream, error) {
	if c.closed.Load() {
		return nil, fmt.Errorf("%w: stream", ErrClosed)
	}
	sctx, cancel := context.WithCancel(c.outgoing(ctx))
	start := int(c.preferred.Load())
	var st grpc.BidiStreamingClient[tempelv1.SignBatch, tempelv1.SignResponseBatch]
	var err error
	var k int
	for i := range c.conns {
		k = (start + i) % len(c.conns)
		if st, err = tempelv1.NewSignerClient(c.conns[k]).SignBatchStream(sctx); err == nil || !failover(err) || sctx.Err() != nil {
			break
		}
	}
	if err != nil {
		cancel()
		return nil, rpcErr(ctx, "stream", c.cfg.Endpoints[k], err)
	}
	c.preferred.Store(int32(k))
	n := c.cfg.MaxOutstanding
	s := &Stream{
		endpoint: c.cfg.Endpoints[k],
		timeout:  c.cfg.Timeout,
		st:       st,
		cancel:   cancel,
		sendq:    make(chan *tempelv1.SignRequest, n),
		slots:    make(chan struct{}, n),
		done:     make(chan struct{}),
		idle:     make(chan struct{}),
		pending:  make(map[uint64]*pendingSign),
	}
	go s.write()
	go s.read(sctx)
	return s, nil
}

// Sign sends hash (a document hash, level 0) and waits for its signature,
// at most Config.Timeout. The signature is verified internally against
// hash before it is returned.
func (s *Stream) Sign(hash ksi.Imprint) (*ksi.Signature, error) {
	type result struct {
		sig []byte
		err error
	}
	ch := make(chan result, 1)
	if err := s.Submit(hash, func(sig []byte, err error) { ch <- result{sig, err} }); err != nil {
		return nil, err
	}
	t := time.NewTimer(s.timeout)
	defer t.Stop()
	select {
	case r := <-ch:
		if r.err != nil {
			return nil, r.err
		}
		return checkSignature(context.Background(), s.endpoint, r.sig, hash, 0)
	case <-t.C:
		return nil, fmt.Errorf("%w: stream sign via %s: %w: no answer in %s", ErrUnavailable, s.endpoint, context.DeadlineExceeded, s.timeout)
	}
}

// Submit sends hash (level 0) and returns at once; cb is called exactly
// once, on the stream's reader goroutine, with the signature's bytes (TLV
// 0x800, not verified) or the request's error. cb must not block: it
// holds up every later answer. When Config.MaxOutstanding requests are
// waiting for answers, Submit blocks until one is answered.
//
// Submit returns an error, and does not call cb, when the stream is
// closed or has failed.
func (s *Stream) Submit(hash ksi.Imprint, cb func(sig []byte, err error)) error {
	if cb == nil {
		return errors.New("client: stream submit: nil callback")
	}
	if _, err := ksi.ParseImprint(hash); err != nil {
		return fmt.Errorf("%w: stream submit: %v", ErrInvalid, err)
	}
	select {
	case s.slots <- struct{}{}:
	case <-s.done:
		return s.Err()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closing || s.err != nil {
		<-s.slots
		if s.err != nil {
			return s.err
		}
		return fmt.Errorf("%w: stream submit", ErrClosed)
	}
	s.next++
	s.pending[s.next] = &pendingSign{cb: cb, hash: hash}
	// Never blocks: sendq holds as many requests as there are slots.
	s.sendq <- &tempelv1.SignRequest{RequestId: s.next, Hash: hash}
	return nil
}

// Outstanding returns the number of requests waiting for answers.
func (s *Stream) Outstanding() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

// Err returns why the stream ended, or nil while it is open.
func (s *Stream) Err() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.err
}

// Close stops taking requests, waits (up to Config.Timeout) for the
// answers still outstanding, ends the stream and returns the error that
// ended it, if any besides the close itself. Requests still unanswered
// get ErrClosed.
func (s *Stream) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closing = true
		s.checkIdleLocked()
		s.mu.Unlock()
		wait, cancel := context.WithTimeout(context.Background(), s.timeout)
		defer cancel()
		select {
		case <-s.idle:
		case <-s.done:
		case <-wait.Done():
		}
		s.mu.Lock()
		close(s.sendq) // the writer half-closes the stream
		s.mu.Unlock()
		select {
		case <-s.done:
		case <-wait.Done():
		}
		s.cancel()
		<-s.done
	})
	err := s.Err()
	if errors.Is(err, ErrClosed) {
		return nil
	}
	return err
}

// checkIdleLocked closes idle once the stream is closing and nothing is
// outstanding.
func (s *Stream) checkIdleLocked() {
	if s.closing && len(s.pending) == 0 && !s.idleClosed {
		s.idleClosed = true
		close(s.idle)
	}
}

// write sends queued requests, as many per message as are waiting, until
// the queue is closed, then half-closes the stream. A send error ends the
// stream; the reader sees why.
func (s *Stream) write() {
	batch := make([]*tempelv1.SignRequest, 0, maxSendBatch)
	for {
		select {
		case req, ok := <-s.sendq:
			if !ok {
				s.st.CloseSend()
				return
			}
			batch = append(batch[:0], req)
		more:
			for len(batch) < maxSendBatch {
				select {
				case r, ok := <-s.sendq:
					if !ok {
						break more // sent below; the next receive sees the close
					}
					batch = append(batch, r)
				default:
					break more
				}
			}
			if err := s.st.Send(&tempelv1.SignBatch{Requests: batch, SharedRounds: true}); err != nil {
				return
			}
		case <-s.done:
			return
		}
	}
}

// read matches answers to callers until the stream ends: complete
// signatures and failures at once, legs when their round arrives.
func (s *Stream) read(ctx context.Context) {
	defer close(s.done)
	var legs round.Joiner
	for {
		b, err := s.st.Recv()
		if err != nil {
			s.fail(ctx, err)
			return
		}
		for _, resp := range b.Responses {
			if resp.Status == 0 && resp.Round != 0 {
				if p := s.peek(resp.RequestId); p != nil {
					legs.Add(resp.Round, round.Leg{ID: resp.RequestId, Hash: p.hash, Shape: resp.Shape, Links: resp.Leg})
				}
				continue
			}
			p := s.take(resp.RequestId)
			if p == nil {
				continue // not ours (or answered twice): ignore
			}
			if resp.Status != 0 {
				s.answer(p, nil, statusErr(s.endpoint, resp.Status, resp.ErrorMessage))
			} else {
				s.answer(p, resp.Signature, nil)
			}
		}
		for _, r := range b.Rounds {
			s.joinRound(&legs, r)
		}
	}
}

// joinRound answers the requests whose legs wait for round r: with their
// complete signatures, or with the round's failure.
func (s *Stream) joinRound(legs *round.Joiner, r *tempelv1.SharedRound) {
	if r.Status != 0 {
		legs.Fail(r.Id, func(l *round.Leg) {
			if p := s.take(l.ID); p != nil {
				s.answer(p, nil, statusErr(s.endpoint, r.Status, r.ErrorMessage))
			}
		})
		return
	}
	ans := &round.Answer{AggregationTime: r.AggregationTime, ChainIndex: r.ChainIndex, Elements: r.Elements}
	legs.Join(r.Id, ksi.HashAlg(r.Algorithm), ans, func(l *round.Leg, sig []byte, err error) {
		p := s.take(l.ID)
		if p == nil {
			return
		}
		if err != nil {
			err = fmt.Errorf("%w: stream via %s: round %d: %v", ErrBadResponse, s.endpoint, r.Id, err)
		}
		s.answer(p, sig, err)
	})
}

// peek returns request id's pending entry, or nil.
func (s *Stream) peek(id uint64) *pendingSign {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pending[id]
}

// take removes and returns request id's pending entry, or nil.
func (s *Stream) take(id uint64) *pendingSign {
	s.mu.Lock()
	defer s.mu.Unlock()
	p, ok := s.pending[id]
	if !ok {
		return nil
	}
	delete(s.pending, id)
	s.checkIdleLocked()
	return p
}

// answer hands a request its result. The slot is freed after the
// callback: a blocked Submit resumes only once an answer was handed over.
func (s *Stream) answer(p *pendingSign, sig []byte, err error) {
	p.cb(sig, err)
	<-s.slots
}

// fail records why the stream ended and fails every outstanding request.
func (s *Stream) fail(ctx context.Context, err error) {
	s.mu.Lock()
	switch {
	case s.closing && (err == io.EOF || ctx.Err() != nil):
		err = fmt.Errorf("%w: stream via %s", ErrClosed, s.endpoint)
	case err == io.EOF:
		err = fmt.Errorf("%w: stream via %s: the server ended the stream", ErrUnavailable, s.endpoint)
	default:
		err = rpcErr(ctx, "stream", s.endpoint, err)
	}
	s.err = err
	pending := s.pending
	s.pending = make(map[uint64]*pendingSign)
	s.checkIdleLocked()
	s.mu.Unlock()
	for _, p := range pending {
		s.answer(p, nil, err)
	}
}
