package aggregator

import (
	"context"
	"sync/atomic"
)

// Sign submits a request and waits for its signature.
func (e *Engine) Sign(ctx context.Context, r Request) Signed {
	c, err := e.submitCaller(r)
	if err != nil {
		return Signed{Err: err}
	}
	return c.wait(ctx)
}

// submitCaller submits a request whose result the caller will wait for
// with caller.wait, taking its part in its round's turn.
// It reserves CostCaller, which wait returns.
func (e *Engine) submitCaller(r Request) (*caller, error) {
	b := e.cfg.Budget
	if !b.ReserveCaller() {
		e.cfg.Metrics.rejected("memory")
		return nil, errBudget
	}
	c := &caller{ch: make(chan Signed, 1), budget: b}
	if err := e.submit(r, c); err != nil {
		b.unreserveCaller()
		return nil, err
	}
	return c, nil
}

// caller is one request whose caller is parked for its result.
type caller struct {
	ch     chan Signed
	state  atomic.Int32 // callerWaiting, callerAnswered or callerGone
	budget *Budget      // holds CostCaller until wait returns
}

const (
	callerWaiting int32 = iota
	callerAnswered
	callerGone
)

func (*caller) kind() waiterKind { return kindParked }

func (c *caller) signed(x Signed, t *turn) {
	x.turn = t
	c.deliver(x)
}

func (*caller) leg(Leg) { panic("aggregator: a leg for a parked caller") }

func (c *caller) fail(err error) { c.deliver(Signed{Err: err}) }

// deliver hands the caller its result. A caller that has given up counts
// as picked up at once: its round must not wait for it.
func (c *caller) deliver(res Signed) {
	if !c.state.CompareAndSwap(callerWaiting, callerAnswered) {
		res.turn.pickedUp()
		return
	}
	c.ch <- res
}

// wait waits for the result or for ctx, in a frame padded with 2 KiB.
//
// Why the pad: a server holds one goroutine per unary call parked here
// for up to a second, tens of thousands at a time, and the runtime starts
// each new goroutine with the average stack it found in use at the last
// GC (plus a guard, rounded up to a power of two). Parked without the
// pad, a gRPC handler uses just under 4 KiB, so handlers started with
// 4 KiB, and every one of them then outgrew it on the way here and
// copied its stack into 8 KiB, a cost on every unary call (measured in
// docs/design/latency.md#parked-callers-stacks). With the pad they start
// with 8 KiB (/gc/stack/starting-size:bytes) and never copy, and their
// stacks take no more memory than before.
//
//go:noinline
func (c *caller) wait(ctx context.Context) Signed {
	var pad [2048]byte
	keepOnStack(pad[:])
	// The caller's stack and call are free once it returns (what stays in
	// its round until the round is done is far less).
	defer c.budget.ReleaseCaller()
	select {
	case x := <-c.ch:
		x.turn.pickedUp()
		x.turn = nil
		return x
	case <-ctx.Done():
		if c.state.CompareAndSwap(callerWaiting, callerGone) {
			return Signed{Err: ctx.Err()}
		}
		// Answered meanwhile (the result is on its way into c.ch): take
		// it, so that its round's turn ends, and return it.
		x := <-c.ch
		x.turn.pickedUp()
		x.turn = nil
		return x
	}
}

// keepOnStack uses b so that the compiler keeps it (it does not escape).
//
//go:noinline
func keepOnStack(b []byte) { _ = b[len(b)-1] }
