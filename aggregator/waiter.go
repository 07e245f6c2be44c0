package aggregator

import (
	"time"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
)

// Signed is the answer to a request in full: its complete KSI signature
// (TLV 0x800), or why there is none.
type Signed struct {
	Signature       []byte
	AggregationTime uint64
	Err             error
	turn            *turn // the round's turn, for a parked caller
}

// Leg is the answer to a request in the shared-round form (SubmitShared),
// in two steps. As soon as the round is built, the request gets its own
// links and chain shape (round.Writer.AppendLeg) and its round, or Err;
// it is signed when Round.Done() is closed with Round.Err nil, and
// round.AppendJoined then makes its signature from Round.Answer. A
// stream sends the legs while the calendar's second runs and each
// round's shared part once: when the calendar answers, there is almost
// nothing left to send.
type Leg struct {
	Leg   []byte
	Shape uint64
	Round *SharedRound
	Err   error
}

// SharedRound is the part of a round's signatures that all its requests
// share: upstream's answer and the round's hash algorithm. Answer and Err
// are set before Done is closed; rounds are done in the order they closed.
type SharedRound struct {
	ID     uint64 // unique within the engine: senders send each round once
	Alg    ksi.HashAlg
	Answer *round.Answer
	Err    error // why the round failed, after Done
	done   chan struct{}
}

// Done is closed when the round has been answered or has failed.
func (r *SharedRound) Done() <-chan struct{} { return r.done }

// Callback receives a request's signature. It runs on the engine's
// goroutine and must not block.
type Callback func(Signed)

// LegCallback receives a shared-round request's leg. It runs on the
// engine's goroutine and must not block.
type LegCallback func(Leg)

// waiterKind is how a request waits for its answer.
type waiterKind uint8

const (
	kindCallback waiterKind = iota // Submit: a callback gets the signature
	kindParked                     // Sign, PDU: a caller parked in caller.wait, taking part in its round's turn
	kindLeg                        // SubmitShared: a callback gets the leg; the round says the rest
	nKinds
)

// waiter is who gets a request's answer.
type waiter interface {
	kind() waiterKind
	// signed hands the signature in full; t is the round's turn.
	signed(x Signed, t *turn)
	// leg hands a shared-round request its leg.
	leg(x Leg)
	// fail hands the request an error instead of any answer.
	fail(err error)
}

func (Callback) kind() waiterKind            { return kindCallback }
func (cb Callback) signed(x Signed, _ *turn) { cb(x) }
func (Callback) leg(Leg)                     { panic("aggregator: a leg for a request in full form") }
func (cb Callback) fail(err error)           { cb(Signed{Err: err}) }

func (LegCallback) kind() waiterKind     { return kindLeg }
func (LegCallback) signed(Signed, *turn) { panic("aggregator: a signature for a shared-round request") }
func (cb LegCallback) leg(x Leg)         { cb(x) }
func (cb LegCallback) fail(err error)    { cb(Leg{Err: err}) }

// pending is a queued request's waiter.
type pending struct {
	w       waiter
	arrived time.Time
}

// kindCounts counts a round's requests by how they wait.
type kindCounts [nKinds]int
