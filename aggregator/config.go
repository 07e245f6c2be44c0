package aggregator

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/tempel-ksi/tempel/internal/schedule"
)

// Config configures an Engine.
type Config struct {
	Upstream Upstream
	// Period is the round length (default 100ms).
	Period time.Duration
	// MaxLevel is the highest request level accepted and advertised
	// (default DefaultMaxLevel). It must leave room above it for the
	// request's metadata, the round tree and upstream's trees within
	// the 255 levels of a chain (MaxLevelLimit).
	MaxLevel byte
	// MaxQueue bounds the requests waiting for a round (default 1,000,000).
	MaxQueue int
	// Budget bounds the memory of waiting requests across the node
	// (default: NewBudget(DefaultBudget)). Sign and the PDU handler
	// charge CostCaller per request; Submit's caller charges its own
	// requests (Engine.Budget).
	Budget *Budget
	// Quota limits one client's requests per round (0: no limit).
	Quota int
	// UpstreamTimeout bounds the wait for upstream (default 5s).
	UpstreamTimeout time.Duration
	// MaxInFlight bounds rounds waiting for upstream (default: two
	// seconds' worth of rounds plus four, at least 16).
	MaxInFlight int
	// Answering, if set, is called with true when upstream has answered
	// a round (the round may then still wait for earlier rounds to be
	// answered) and with false when the round is done: its waiting
	// callers have picked up their results, or its turn ran out (maxTurn),
	// or it failed. A process can hold off work, such as garbage
	// collection, while a second's answers go out. It is called from the
	// rounds' goroutines, concurrently, and must not block.
	Answering func(bool)
	Logger    *slog.Logger
	Metrics   *Metrics
	Now       func() time.Time
}

// DefaultMaxLevel is the default highest request level. The reference
// tools apply an advertised maximum as it is (`ksi sign
// --apply-remote-conf` sizes its local round for 2^max inputs): 20 keeps
// that at a million leaves, where 32 ran them out of memory.
const DefaultMaxLevel = 20

// New creates an engine; call Run to start closing rounds.
func New(cfg Config) (*Engine, error) {
	if cfg.Upstream == nil {
		return nil, errors.New("aggregator: no upstream")
	}
	if cfg.Period <= 0 {
		cfg.Period = DefaultPeriod
	}
	if cfg.MaxLevel == 0 {
		cfg.MaxLevel = DefaultMaxLevel
	}
	if cfg.MaxQueue == 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if limit := MaxLevelLimit(cfg.MaxQueue, cfg.Upstream); int(cfg.MaxLevel) > limit {
		return nil, fmt.Errorf("aggregator: max level %d leaves no room for the round tree and upstream's trees above it: at most %d with a queue of %d",
			cfg.MaxLevel, limit, cfg.MaxQueue)
	}
	if cfg.Budget == nil {
		cfg.Budget = NewBudget(DefaultBudget)
	}
	if cfg.UpstreamTimeout == 0 {
		cfg.UpstreamTimeout = 5 * time.Second
	}
	if cfg.MaxInFlight == 0 {
		// Rounds wait for upstream about a second (the calendar's second,
		// its grace, the hold of a late round): room for two seconds' worth.
		cfg.MaxInFlight = max(16, schedule.RoundsIn(2*time.Second, cfg.Period)+4)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	// Round ids start at 1: 0 is "no round" on the wire.
	e := &Engine{cfg: cfg, log: cfg.Logger, perUser: make(map[string]int), inflight: make(chan struct{}, cfg.MaxInFlight),
		nextID: 1, turns: newTurns(cfg)}
	e.pdu = &PDUSigner{e: e}
	return e, nil
}
