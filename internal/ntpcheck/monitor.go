package ntpcheck

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
)

// Defaults of a Monitor.
const (
	DefaultInterval  = 64 * time.Second
	DefaultMaxOffset = 500 * time.Millisecond
	// DefaultStaleIntervals: with no answer for this many intervals the
	// clock counts as unchecked.
	DefaultStaleIntervals = 5
	// maxQueryTimeout bounds the wait for one answer.
	maxQueryTimeout = 5 * time.Second
	// maxRetry bounds the wait before asking again after a failure, so
	// that one lost datagram does not hold signing for a whole interval.
	maxRetry = 10 * time.Second
)

// ErrClock is the error of a clock the node does not trust.
var ErrClock = errors.New("clock")

// Config is a Monitor's settings.
type Config struct {
	Server    string        // HOST or HOST:PORT
	Interval  time.Duration // between queries (DefaultInterval when 0)
	MaxOffset time.Duration // the largest |offset| trusted (DefaultMaxOffset when 0)
	Stale     time.Duration // with no answer for this long the clock is untrusted (DefaultStaleIntervals × Interval when 0)
	Now       func() time.Time
	Logger    *slog.Logger
	// Observe, when set, is called after every query: with its sample,
	// or with its error.
	Observe func(Sample, error)
	// SetFault is called whenever the verdict changes: with why the
	// clock is not trusted, or nil when it is again.
	SetFault func(error)
}

// Monitor queries an NTP server every interval and says whether the
// local clock is to be trusted.
type Monitor struct {
	cfg Config

	mu         sync.Mutex
	fault      error
	lastAnswer time.Time // zero: none yet
}

// NewMonitor checks cfg and fills in its defaults. Until the first
// answer the clock is not trusted.
func NewMonitor(cfg Config) (*Monitor, error) {
	if cfg.Server == "" || cfg.SetFault == nil {
		return nil, errors.New("ntpcheck: a monitor needs a server and SetFault")
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.MaxOffset == 0 {
		cfg.MaxOffset = DefaultMaxOffset
	}
	if cfg.Stale == 0 {
		cfg.Stale = DefaultStaleIntervals * cfg.Interval
	}
	switch {
	case cfg.Interval < 0 || cfg.MaxOffset < 0 || cfg.Stale < 0:
		return nil, errors.New("ntpcheck: interval, maximum offset and staleness must be positive")
	case cfg.Stale < cfg.Interval:
		return nil, fmt.Errorf("ntpcheck: staleness %s is shorter than the interval %s: the clock would count as unchecked between two queries", cfg.Stale, cfg.Interval)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Monitor{cfg: cfg}
	m.fault = fmt.Errorf("%w: waiting for the first answer from ntp %s", ErrClock, cfg.Server)
	return m, nil
}

// Fault is why the clock is not trusted now, nil when it is.
func (m *Monitor) Fault() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.fault
}

// Run queries the server until ctx ends: at once, then every interval
// (sooner after a failure).
func (m *Monitor) Run(ctx context.Context) {
	m.cfg.SetFault(m.Fault())
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		ok := m.check(ctx)
		wait := m.cfg.Interval
		if !ok {
			wait = min(wait, maxRetry)
		}
		timer.Reset(wait)
	}
}

// check makes one query and updates the verdict; it reports whether
// the server answered.
func (m *Monitor) check(ctx context.Context) bool {
	// An answer slower than the interval still counts, so a loaded
	// machine does not look like a silent server.
	qctx, cancel := context.WithTimeout(ctx, min(m.cfg.Stale, maxQueryTimeout))
	s, err := Query(qctx, m.cfg.Server, m.cfg.Now)
	cancel()
	if ctx.Err() != nil {
		return false
	}
	if m.cfg.Observe != nil {
		m.cfg.Observe(s, err)
	}
	if err != nil {
		m.cfg.Logger.Warn("clock check failed", "ntp", m.cfg.Server, "err", err)
	}
	m.verdict(s, err, m.cfg.Now())
	return err == nil
}

// verdict records a query's outcome at now, telling SetFault when the
// trust in the clock changes.
func (m *Monitor) verdict(s Sample, qerr error, now time.Time) {
	m.mu.Lock()
	if qerr == nil {
		m.lastAnswer = now
	}
	prev := m.fault
	m.fault = m.judge(s, qerr, now)
	fault := m.fault
	m.mu.Unlock()
	// Logged once per change of state, not per query: the offset's
	// digits change with every answer.
	switch {
	case fault != nil && kind(prev) != kind(fault):
		m.cfg.Logger.Error("clock not trusted: signing stopped", "err", fault)
	case fault == nil && prev != nil:
		m.cfg.Logger.Info("clock checked: signing", "ntp", m.cfg.Server, "offset", s.Offset, "delay", s.Delay)
	}
	if (fault == nil) != (prev == nil) || (fault != nil && prev.Error() != fault.Error()) {
		m.cfg.SetFault(fault)
	}
}

// judge is why the clock is not trusted after a query's outcome, nil
// when it is. A failed query keeps the last verdict until the last
// answer is stale.
func (m *Monitor) judge(s Sample, qerr error, now time.Time) error {
	if qerr != nil {
		last := m.lastAnswer
		if last.IsZero() {
			return fmt.Errorf("%w: no answer yet from ntp %s (%v)", ErrClock, m.cfg.Server, qerr)
		}
		if age := now.Sub(last); age > m.cfg.Stale {
			return fmt.Errorf("%w: no answer from ntp %s for %s (stale after %s): %v", ErrClock, m.cfg.Server, age.Round(time.Second), m.cfg.Stale, qerr)
		}
		return m.fault
	}
	if abs(s.Offset) > m.cfg.MaxOffset {
		return fmt.Errorf("%w: offset %s against ntp %s exceeds %s", ErrClock, signed(s.Offset), m.cfg.Server, m.cfg.MaxOffset)
	}
	return nil
}

// kind is the state a fault stands for, without its numbers.
func kind(err error) string {
	if err == nil {
		return ""
	}
	msg := err.Error()
	for _, k := range []string{"waiting for the first answer", "no answer yet", "no answer from", "offset +", "offset -"} {
		if strings.Contains(msg, k) {
			return k
		}
	}
	return msg
}

func abs(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}

// signed is d rounded to the millisecond, with its sign: "+1.234s".
func signed(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}
