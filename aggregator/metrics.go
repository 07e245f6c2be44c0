package aggregator

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the engine's Prometheus metrics; nil records nothing.
type Metrics struct {
	rounds       prometheus.Counter
	roundSize    prometheus.Histogram
	roundLatency prometheus.Histogram
	endToEnd     prometheus.Histogram
	queueDepth   prometheus.Gauge
	upstreamErrs prometheus.Counter
	rejections   *prometheus.CounterVec
	turnTimeouts prometheus.Counter
}

// NewMetrics registers the engine's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		rounds: prometheus.NewCounter(prometheus.CounterOpts{Name: "tempel_aggregator_rounds_total", Help: "Rounds closed with at least one request."}),
		roundSize: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tempel_aggregator_round_size", Help: "Requests per round.",
			Buckets: prometheus.ExponentialBuckets(1, 4, 11)}),
		roundLatency: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tempel_aggregator_round_seconds", Help: "From round close to every answer (tree, upstream, signatures).",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		endToEnd: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "tempel_aggregator_request_seconds", Help: "From a request's arrival to its answer.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14)}),
		queueDepth:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "tempel_aggregator_queue_depth", Help: "Requests waiting for the next round."}),
		upstreamErrs: prometheus.NewCounter(prometheus.CounterOpts{Name: "tempel_aggregator_upstream_errors_total", Help: "Rounds whose upstream call failed."}),
		rejections: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "tempel_aggregator_rejected_total", Help: "Requests refused before queuing, by reason."},
			[]string{"reason"}),
		turnTimeouts: prometheus.NewCounter(prometheus.CounterOpts{Name: "tempel_aggregator_turn_timeouts_total",
			Help: "Rounds whose waiting callers had not all picked up their results within 200 ms, so the next round went ahead."}),
	}
	reg.MustRegister(m.rounds, m.roundSize, m.roundLatency, m.endToEnd, m.queueDepth, m.upstreamErrs, m.rejections, m.turnTimeouts)
	return m
}

func (m *Metrics) queued(depth int) {
	if m != nil {
		m.queueDepth.Set(float64(depth))
	}
}

func (m *Metrics) rejected(reason string) {
	if m != nil {
		m.rejections.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) turnTimedOut() {
	if m != nil {
		m.turnTimeouts.Inc()
	}
}

func (m *Metrics) upstreamError() {
	if m != nil {
		m.upstreamErrs.Inc()
	}
}

func (m *Metrics) round(n int, d time.Duration, q []pending, now time.Time) {
	if m == nil {
		return
	}
	m.rounds.Inc()
	m.roundSize.Observe(float64(n))
	m.roundLatency.Observe(d.Seconds())
	m.queueDepth.Set(0)
	// Sampling keeps this cheap for rounds of 100k requests.
	step := max(1, len(q)/256)
	for i := 0; i < len(q); i += step {
		m.endToEnd.Observe(now.Sub(q[i].arrived).Seconds())
	}
}
