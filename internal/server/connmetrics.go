package server

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// registerMetrics exports the listener's counts on reg: how close the
// server is to its connection limit, how much it refuses, and whether
// accept fails (out of descriptors).
func (l *limitListener) registerMetrics(reg prometheus.Registerer) error {
	gauge := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f)
	}
	counter := func(name, help string, f func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f)
	}
	var errs []error
	for _, c := range []prometheus.Collector{
		gauge("tempel_connections_open", "Client connections open.", func() float64 { return float64(l.open.Load()) }),
		gauge("tempel_connections_max", "Client connections allowed (--max-conns, lowered to what RLIMIT_NOFILE allows).",
			func() float64 { return float64(l.max) }),
		counter("tempel_connections_refused_total", "Client connections closed at once because the limit was reached.",
			func() float64 { return float64(l.refusedTotal.Load()) }),
		counter("tempel_accept_errors_total", "Failed accepts (out of descriptors or buffers), each retried after a backoff.",
			func() float64 { return float64(l.acceptErrors.Load()) }),
	} {
		errs = append(errs, reg.Register(c))
	}
	return errors.Join(errs...)
}
