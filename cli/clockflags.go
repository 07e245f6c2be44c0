package cli

import (
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/ntpcheck"
)

// clockConfig reads the NTP clock check's flags into cfg, refusing
// settings under which the check would mean nothing.
func clockConfig(c *ucli.Context, cfg *node.Config) error {
	cfg.NTPServer, cfg.NTPInterval = c.String("ntp-server"), c.Duration("ntp-interval")
	cfg.MaxClockOffset, cfg.NTPStale = c.Duration("max-clock-offset"), c.Duration("ntp-stale")
	if cfg.NTPServer == "" {
		return nil
	}
	switch {
	case cfg.Role == node.RoleAggregator:
		return usageErrorf("--ntp-server needs a calendar (--role all or calendar): an aggregator takes the time of its parent's calendar")
	case cfg.NTPInterval < 100*time.Millisecond:
		return usageErrorf("--ntp-interval %s: must be at least 100ms", cfg.NTPInterval)
	case cfg.MaxClockOffset <= 0:
		return usageErrorf("--max-clock-offset %s: must be positive", cfg.MaxClockOffset)
	case cfg.NTPStale < 0 || (cfg.NTPStale > 0 && cfg.NTPStale < cfg.NTPInterval):
		return usageErrorf("--ntp-stale %s: must be at least --ntp-interval (%s), or 0 for %d × --ntp-interval", cfg.NTPStale, cfg.NTPInterval, ntpcheck.DefaultStaleIntervals)
	}
	return nil
}
