package node

import (
	"math"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tempel-ksi/tempel/calendar"
)

// registerOpsMetrics exports, as gauges read at scrape time, what the
// dashboard (deploy/grafana) and the alert rules (deploy/prometheus)
// watch and no component counts: readiness, the memory budget of waiting
// requests, the calendar's free disk space against its reserve, and the
// age of the newest publication against the publication period.
func (n *Node) registerOpsMetrics() {
	gauge := func(name, help string, f func() float64) {
		n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
	}
	gauge("tempel_ready", "1 when the node answers requests (as /readyz), 0 when it refuses them.", func() float64 { return b2f(n.ready() == nil) })
	if b := n.h.budget; b != nil {
		gauge("tempel_memory_budget_bytes", "Size of the memory budget of waiting requests (--max-memory).", func() float64 { return float64(b.Limit()) })
		gauge("tempel_memory_budget_used_bytes", "Memory budget of waiting requests in use.", func() float64 { return float64(b.Used()) })
		n.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tempel_memory_budget_refused_total",
			Help: "Requests refused at once because the memory budget was in use."}, func() float64 { return float64(b.Refused()) }))
	}
	if n.store != nil {
		reserve := n.cfg.MinFreeBytes
		if reserve == 0 {
			reserve = calendar.DefaultMinFreeBytes
		}
		gauge("tempel_calendar_disk_reserve_bytes", "Free space below which the calendar stops appending (--min-free).", func() float64 { return float64(reserve) })
		gauge("tempel_calendar_disk_free_bytes", "Free space on the calendar's data directory (NaN when unknown).", func() float64 {
			du, err := vfs.Default.GetDiskUsage(n.cfg.DataDir)
			if err != nil {
				return math.NaN()
			}
			return float64(du.AvailBytes)
		})
	}
	if n.pub != nil {
		gauge("tempel_publication_period_seconds", "Period between publications.", func() float64 { return n.cfg.PublishEvery.Seconds() })
		gauge("tempel_publication_last_time_seconds", "Calendar time (Unix seconds) of the newest publication; 0 before the first.", func() float64 {
			if p := n.pub.Latest(); p != nil {
				return float64(p.Data.Time)
			}
			return 0
		})
	}
}
