package bench

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protowire"
)

// Unary clients of the load generator.
const (
	// ClientLean makes unary calls with h2conn (the default).
	ClientLean = "lean"
	// ClientGRPC makes unary calls with gRPC-Go's client.
	ClientGRPC = "grpc"
)

// drainTimeout is how long a run waits for the answers to its last calls.
var drainTimeout = 30 * time.Second

// unaryLean drives ModeUnary or ModePing over cfg.Conns lean
// connections: with a Rate, one dispatcher per connection sends its share
// of the schedule (every call due when it wakes, in one write); without,
// Concurrency callers each start their next call from the answer of the
// last (on the connection's reader, no goroutine per call).
func (r *run) unaryLean(runCtx, ctx context.Context) error {
	method := "/tempel.v1.Signer/Sign"
	if r.cfg.Mode == ModePing {
		method = "/grpc.health.v1.Health/Check"
	}
	auth := ""
	if r.cfg.Login != "" {
		auth = "Basic " + base64.StdEncoding.EncodeToString([]byte(r.cfg.Login+":"+r.cfg.Key))
	}
	conns := make([]*h2conn, max(1, r.cfg.Conns))
	for i := range conns {
		c, err := dialH2Over(ctx, r.cfg.Server, h2Dial{TLS: r.cfg.TLS}, method, auth)
		if err != nil {
			for _, c := range conns[:i] {
				c.close()
			}
			return err
		}
		defer c.close()
		conns[i] = c
	}
	// Once the run ends, its last answers get drainTimeout; then the
	// connections fail what is left (which counts as errors), which also
	// frees a call waiting for flow-control window from a stalled server.
	drained := make(chan struct{})
	defer close(drained)
	go func() {
		select {
		case <-runCtx.Done():
		case <-drained:
			return
		}
		t := time.NewTimer(drainTimeout)
		defer t.Stop()
		select {
		case <-t.C:
			for _, c := range conns {
				c.fail(fmt.Errorf("no answer within %s after the run", drainTimeout))
			}
		case <-drained:
		}
	}()
	var wg sync.WaitGroup
	if r.cfg.Rate > 0 {
		for i, c := range conns {
			wg.Add(1)
			go func() {
				defer wg.Done()
				r.dispatch(runCtx, c, newSchedule(r.cfg.Rate, len(conns), uint64(i), 1), uint64(i))
			}()
		}
	} else {
		for i := range r.cfg.Concurrency {
			c := conns[i%len(conns)]
			caller := &leanCaller{r: r, c: c, worker: uint64(i), runCtx: runCtx}
			go caller.next(time.Now().UnixNano())
		}
		<-runCtx.Done()
	}
	wg.Wait()
	for _, c := range conns {
		c.waitIdle()
	}
	return nil
}

// dispatch sends calls on c as sch has them due; each call's latency
// counts from its scheduled time.
func (r *run) dispatch(ctx context.Context, c *h2conn, sch *schedule, worker uint64) {
	for n := uint64(0); ctx.Err() == nil; {
		now := time.Now()
		for t, ok := sch.due(now); ok; t, ok = sch.due(now) {
			r.leanCall(c, worker, n, t, nil)
			n++
		}
		// Waking at most once a millisecond sends the calls due in it in
		// one write; their latency still counts from their own times.
		time.Sleep(max(time.Until(sch.next), time.Millisecond))
	}
}

// leanCaller is one caller of a closed loop: each answer starts the next
// call until the run ends.
type leanCaller struct {
	r      *run
	c      *h2conn
	worker uint64
	n      uint64
	runCtx context.Context
}

func (lc *leanCaller) next(t0 int64) {
	if lc.runCtx.Err() != nil {
		return
	}
	n := lc.n
	lc.n++
	// The next call starts on its own goroutine, not on the connection's
	// reader that runs then: a call may wait for flow-control window,
	// which only the reader can give back.
	lc.r.leanCall(lc.c, lc.worker, n, t0, func(err error) {
		if err != nil && lc.c.broken() {
			return // the connection is gone: its error is counted once per call in flight
		}
		go lc.next(time.Now().UnixNano())
	})
}

// leanCall makes call n of worker, scheduled at t0, and records it; then
// runs then, if set, with the call's error.
func (r *run) leanCall(c *h2conn, worker, n uint64, t0 int64, then func(error)) {
	var msg []byte
	var hash []byte
	if r.cfg.Mode != ModePing {
		hash = hashFor(worker, n)
		msg = protowire.AppendTag(msg, 1, protowire.VarintType)
		msg = protowire.AppendVarint(msg, n)
		msg = protowire.AppendTag(msg, 2, protowire.BytesType)
		msg = protowire.AppendBytes(msg, hash)
	}
	sent := time.Now().UnixNano()
	c.call(msg, func(answer []byte, err error) {
		size := 0
		if err == nil && hash != nil {
			size, err = r.signature(answer, hash)
		}
		r.recordCall(t0, sent, time.Now().UnixNano(), size, err)
		if then != nil {
			then(err)
		}
	})
}

// signature reads a SignResponse and returns its signature's size; the
// first signature of the run is parsed and verified (internal policy) so
// that a wrong answer fails the run rather than inflating it.
func (r *run) signature(msg, hash []byte) (int, error) {
	var sig []byte
	for len(msg) > 0 {
		num, typ, n := protowire.ConsumeTag(msg)
		if n < 0 {
			return 0, fmt.Errorf("SignResponse: %w", protowire.ParseError(n))
		}
		msg = msg[n:]
		if num == 2 && typ == protowire.BytesType {
			v, n := protowire.ConsumeBytes(msg)
			if n < 0 {
				return 0, fmt.Errorf("SignResponse signature: %w", protowire.ParseError(n))
			}
			sig, msg = v, msg[n:]
			continue
		}
		n = protowire.ConsumeFieldValue(num, typ, msg)
		if n < 0 {
			return 0, fmt.Errorf("SignResponse field %d: %w", num, protowire.ParseError(n))
		}
		msg = msg[n:]
	}
	if len(sig) == 0 {
		return 0, errors.New("SignResponse without a signature")
	}
	if r.verified.CompareAndSwap(false, true) {
		if err := checkSignature(sig, hash); err != nil {
			return 0, err
		}
	}
	return len(sig), nil
}
