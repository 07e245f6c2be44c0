package node

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tempel-ksi/tempel/internal/ntpcheck"
)

// withClockCheck watches the clock against Config.NTPServer, when set:
// while the clock is off by more than MaxClockOffset, or unchecked for
// NTPStale, the calendar is not ready, so the node refuses to sign and
// /readyz says why. Only a calendar reads the clock into signatures;
// an aggregator learns the time from its parent.
func (n *Node) withClockCheck() error {
	cfg := n.cfg
	if cfg.NTPServer == "" {
		return nil
	}
	if n.cal == nil {
		return errors.New("--ntp-server needs a calendar (role all or calendar): an aggregator takes the time of its parent's calendar")
	}
	offset := prometheus.NewGauge(prometheus.GaugeOpts{Name: "tempel_clock_offset_seconds",
		Help: "The clock's offset from the NTP server at the last answer (positive: the server is ahead)."})
	failures := prometheus.NewCounter(prometheus.CounterOpts{Name: "tempel_clock_check_failures_total",
		Help: "NTP queries that failed: no answer, or an answer refused (kiss-o'-death, unsynchronized, malformed)."})
	n.reg.MustRegister(offset, failures)
	m, err := ntpcheck.NewMonitor(ntpcheck.Config{Server: cfg.NTPServer, Interval: cfg.NTPInterval,
		MaxOffset: cfg.MaxClockOffset, Stale: cfg.NTPStale, Now: n.now, Logger: n.log,
		Observe: func(s ntpcheck.Sample, err error) {
			if err != nil {
				failures.Inc()
				return
			}
			offset.Set(s.Offset.Seconds())
		},
		SetFault: n.cal.SetClockFault})
	if err != nil {
		return err
	}
	// Not trusted until the first answer: no signature before it.
	n.cal.SetClockFault(m.Fault())
	n.h.calLoops = append(n.h.calLoops, m.Run)
	return nil
}

// now is the node's clock.
func (n *Node) now() time.Time {
	if n.cfg.Now != nil {
		return n.cfg.Now()
	}
	return time.Now()
}
