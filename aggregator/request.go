package aggregator

import (
	"errors"
	"fmt"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

// Identity is who asked: it becomes the signature's metadata link.
type Identity struct {
	ClientID  string
	MachineID string
	// Sequence is the caller's request number, if known.
	Sequence    uint64
	HasSequence bool
}

// Request is one hash to sign.
type Request struct {
	Hash     ksi.Imprint
	Level    byte
	Identity Identity
	// ChildRound marks a child aggregator's round root (its upstream link
	// says so with ChildRoundKey). A child's root sits above its own
	// clients' levels by a metadata link and its round tree, so it is
	// bounded by the structural limit (MaxLevelLimit), not by MaxLevel:
	// MaxLevel is the level clients' own trees may reach and what KSI
	// clients are told, and one client at that level would otherwise get
	// its child's whole round refused. Anyone may set the mark; the
	// structural limit is what keeps every round within 255 levels.
	ChildRound bool
}

// ChildRoundKey is the gRPC metadata key by which a child aggregator
// marks the roots it sends upstream ([Request.ChildRound]).
const ChildRoundKey = "x-tempel-child-round"

// Errors callers map to protocol statuses.
var (
	ErrBadRequest   = errors.New("aggregator: bad request")
	ErrLevelTooHigh = errors.New("aggregator: request level above the maximum")
	ErrOverQuota    = errors.New("aggregator: over quota for this round")
	ErrOverloaded   = errors.New("aggregator: too many requests queued")
	ErrUpstream     = errors.New("aggregator: upstream error")
	ErrUpstreamTime = errors.New("aggregator: upstream timeout")
	ErrStopped      = errors.New("aggregator: stopped")
)

// checkHash checks a document hash other than SHA-256: a well-formed
// imprint of an algorithm that Tempel implements and that is neither
// deprecated nor obsolete now (docs/design/formats.md#hash-algorithms). The round tree hashes with
// SHA-256 above it whatever its algorithm.
func checkHash(h ksi.Imprint, now time.Time) error {
	if _, err := ksi.ParseImprint(h); err != nil {
		return fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	if err := h.Alg().CheckSigning(uint64(max(now.Unix(), 0))); err != nil {
		return fmt.Errorf("%w: document hash: %w", ErrBadRequest, err)
	}
	return nil
}

// levelLimit is the highest level r may carry: MaxLevel for a client's
// own tree, the structural limit for a child aggregator's round root.
func (e *Engine) levelLimit(r Request) byte {
	if r.ChildRound {
		return byte(MaxLevelLimit(e.cfg.MaxQueue, e.cfg.Upstream))
	}
	return e.cfg.MaxLevel
}
