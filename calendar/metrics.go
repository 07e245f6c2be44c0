package calendar

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the calendar's Prometheus metrics. A nil *Metrics records
// nothing, so tests need not build one.
type Metrics struct {
	leaves        prometheus.Counter
	appendLatency prometheus.Histogram
	submissions   prometheus.Counter
	signatures    prometheus.Counter
	extends       *prometheus.CounterVec
	commitLatency prometheus.Histogram
	notCommitted  prometheus.Counter
	fetchedLeaves prometheus.Counter
	servedLeaves  prometheus.Counter
}

// NewMetrics registers the calendar's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		leaves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempel_calendar_leaves_appended_total", Help: "Calendar leaves appended (one per second, empty ones included).",
		}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tempel_calendar_append_seconds", Help: "Time to build the top tree and append one second durably.",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		submissions: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempel_calendar_submissions_total", Help: "Roots submitted to the calendar.",
		}),
		signatures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempel_calendar_signatures_issued_total", Help: "Signatures the calendar answered to its children.",
		}),
		extends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tempel_calendar_extend_requests_total", Help: "Extend requests by outcome.",
		}, []string{"result"}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tempel_calendar_commit_seconds", Help: "Replicated calendar, on the leader: from proposing a second's entry to its being applied on this member (committed on a majority).",
			Buckets: prometheus.ExponentialBuckets(0.0005, 2, 14),
		}),
		notCommitted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempel_calendar_seconds_not_committed_total", Help: "Replicated calendar, on the leader: seconds whose entry was not applied in time or lost to another entry (their callers got an error).",
		}),
		fetchedLeaves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempel_calendar_catchup_seconds_fetched_total", Help: "Replicated calendar: seconds this member fetched from peers to restore a snapshot.",
		}),
		servedLeaves: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempel_calendar_catchup_seconds_served_total", Help: "Replicated calendar: seconds this member sent to peers restoring a snapshot.",
		}),
	}
	reg.MustRegister(m.leaves, m.appendLatency, m.submissions, m.signatures, m.extends, m.commitLatency, m.notCommitted, m.fetchedLeaves, m.servedLeaves)
	return m
}

func (m *Metrics) appended(n int, d time.Duration) {
	if m != nil {
		m.leaves.Add(float64(n))
		m.appendLatency.Observe(d.Seconds())
	}
}

func (m *Metrics) submitted() {
	if m != nil {
		m.submissions.Inc()
	}
}

func (m *Metrics) issued(n int) {
	if m != nil {
		m.signatures.Add(float64(n))
	}
}

func (m *Metrics) extended(err error) {
	if m == nil {
		return
	}
	switch {
	case err == nil:
		m.extends.WithLabelValues("ok").Inc()
	case errors.Is(err, ErrTimeTooOld), errors.Is(err, ErrTimeTooNew), errors.Is(err, ErrBadRange):
		m.extends.WithLabelValues("out_of_range").Inc()
	default:
		m.extends.WithLabelValues("error").Inc()
	}
}

func (m *Metrics) committed(d time.Duration, ok bool) {
	if m == nil {
		return
	}
	if ok {
		m.commitLatency.Observe(d.Seconds())
	} else {
		m.notCommitted.Inc()
	}
}

func (m *Metrics) fetched(n int) {
	if m != nil {
		m.fetchedLeaves.Add(float64(n))
	}
}

func (m *Metrics) served(n int) {
	if m != nil {
		m.servedLeaves.Add(float64(n))
	}
}
