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
}

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
