// Package tsa is Tempel's RFC 3161 time-stamping authority: it answers a
// DER TimeStampReq with a token whose content is fixed before its round
// (package tsp) and whose KSI signature comes from that round, the same
// rounds as every other signing request (docs/design/rfc3161.md).
//
// A token's genTime must be the calendar second its document is
// aggregated in, and the document is a digest over the genTime: the
// responder drafts the token for the second the next round is expected to
// reach, and drafts it again for a later second when the round lands in
// another one. No token leaves with a genTime other than its KSI
// signature's aggregation time.
package tsa

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/tsp"
)

// DefaultMisses bounds how many times a request is drafted again after
// its round landed in another second than predicted.
const DefaultMisses = 3

// Aggregate signs doc in the node's next round and returns the KSI
// signature and its aggregation time.
type Aggregate func(ctx context.Context, doc ksi.Imprint) (sig []byte, aggrTime uint64, err error)

// Config configures a Responder.
type Config struct {
	// Signer is the TSA: key, certificate, policies.
	Signer *tsp.Signer
	// Aggregate signs a document in the node's rounds.
	Aggregate Aggregate
	// NextSecond is the calendar second a document submitted now is
	// expected to be aggregated in.
	NextSecond func() uint64
	// Misses is DefaultMisses when 0.
	Misses  int
	Metrics *Metrics
	Logger  *slog.Logger
}

// Responder answers time-stamp requests; it is safe for concurrent use.
type Responder struct {
	cfg Config
}

// New returns a responder.
func New(cfg Config) (*Responder, error) {
	if cfg.Signer == nil || cfg.Aggregate == nil || cfg.NextSecond == nil {
		return nil, errors.New("tsa: a signer, an aggregator and the next second are required")
	}
	if cfg.Misses == 0 {
		cfg.Misses = DefaultMisses
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return &Responder{cfg: cfg}, nil
}

// ErrMissed is the failure of a request whose rounds kept landing in
// other seconds than its drafts named.
var ErrMissed = errors.New("tsa: the request's rounds did not land in the seconds its tokens named")

// Respond answers the DER request der with a TimeStampResp. A request
// the TSA refuses gets a rejection and a nil error; a failure of the
// node (aggregation, the key) gets a rejection (systemFailure or
// timeNotAvailable) and the error, which says what the HTTP status
// should be (the aggregator's status table).
func (r *Responder) Respond(ctx context.Context, der []byte) ([]byte, error) {
	req, err := tsp.ParseRequest(der)
	if err != nil {
		return r.reject(err), nil
	}
	serial, err := newSerial()
	if err != nil {
		return r.fail(tsp.SystemFailure, err), err
	}
	for try := 0; ; try++ {
		t := r.cfg.NextSecond()
		d, err := r.cfg.Signer.Draft(req, serial, time.Unix(int64(t), 0))
		if err != nil {
			return r.reject(err), nil
		}
		resp, landed, err := r.issue(ctx, d, t)
		switch {
		case err != nil:
			return r.fail(tsp.SystemFailure, err), err
		case resp != nil:
			r.cfg.Metrics.granted()
			return resp, nil
		case try >= r.cfg.Misses:
			err := fmt.Errorf("%w (%d drafts, the last for %d, its round landed in %d)", ErrMissed, try+1, t, landed)
			return r.fail(tsp.TimeNotAvailable, err), err
		}
		r.cfg.Metrics.missed()
		r.cfg.Logger.Debug("time-stamp drafted again: its round landed in another second", "drafted", t, "landed", landed)
	}
}

// issue aggregates the draft's document while the TSA key signs it; it
// returns the response, or nil and the second the round landed in when
// that is not the draft's.
func (r *Responder) issue(ctx context.Context, d *tsp.Draft, t uint64) ([]byte, uint64, error) {
	type keySig struct {
		sig []byte
		err error
	}
	signed := make(chan keySig, 1)
	go func() {
		start := time.Now()
		sig, err := d.Sign()
		r.cfg.Metrics.keyOp(time.Since(start))
		signed <- keySig{sig, err}
	}()
	ksig, landed, err := r.cfg.Aggregate(ctx, d.Document())
	if err != nil {
		return nil, 0, err
	}
	if landed != t {
		return nil, landed, nil
	}
	ks := <-signed
	if ks.err != nil {
		return nil, 0, fmt.Errorf("tsa: the TSA key: %w", ks.err)
	}
	sig, err := ksi.ParseSignature(ksig)
	if err != nil {
		return nil, 0, fmt.Errorf("tsa: the round's signature: %w", err)
	}
	resp, err := d.Response(ks.sig, sig)
	if err != nil {
		return nil, 0, fmt.Errorf("tsa: the token: %w", err)
	}
	return resp, t, nil
}

// reject answers a request the TSA refuses.
func (r *Responder) reject(err error) []byte {
	var f *tsp.Failure
	if !errors.As(err, &f) {
		f = &tsp.Failure{Info: tsp.SystemFailure, Text: err.Error()}
	}
	r.cfg.Metrics.rejected(f.Info)
	return tsp.Rejection(f)
}

// fail answers a request the node could not serve.
func (r *Responder) fail(info tsp.FailureInfo, err error) []byte {
	r.cfg.Metrics.failed()
	r.cfg.Logger.Warn("time-stamp request failed", "err", err)
	return tsp.Rejection(&tsp.Failure{Info: info, Text: err.Error()})
}

// newSerial is a token serial number: 127 random bits, positive, so that
// serials are unique across restarts and across the members of a cluster
// without any state (RFC 3161 allows up to 160 bits).
func newSerial() (*big.Int, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	b[0] &= 0x7f
	b[0] |= 0x40 // never zero, always 16 bytes long
	return new(big.Int).SetBytes(b[:]), nil
}

// Metrics are the responder's Prometheus metrics; a nil *Metrics records
// nothing.
type Metrics struct {
	tokens *prometheus.CounterVec
	misses prometheus.Counter
	keyOps prometheus.Histogram
}

// NewMetrics registers the responder's metrics on reg.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		tokens: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tempel_tsa_responses_total", Help: "RFC 3161 responses by outcome: granted, rejected (with the failure) or failed (the node's fault).",
		}, []string{"result"}),
		misses: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tempel_tsa_drafts_again_total", Help: "Tokens drafted again because their round landed in another second than predicted.",
		}),
		keyOps: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "tempel_tsa_key_seconds", Help: "Time of the TSA key's signature of one token.",
			Buckets: prometheus.ExponentialBuckets(0.00002, 2, 14),
		}),
	}
	reg.MustRegister(m.tokens, m.misses, m.keyOps)
	return m
}

func (m *Metrics) granted() {
	if m != nil {
		m.tokens.WithLabelValues("granted").Inc()
	}
}

func (m *Metrics) rejected(f tsp.FailureInfo) {
	if m != nil {
		m.tokens.WithLabelValues("rejected_" + f.String()).Inc()
	}
}

func (m *Metrics) failed() {
	if m != nil {
		m.tokens.WithLabelValues("failed").Inc()
	}
}

func (m *Metrics) missed() {
	if m != nil {
		m.misses.Inc()
	}
}

func (m *Metrics) keyOp(d time.Duration) {
	if m != nil {
		m.keyOps.Observe(d.Seconds())
	}
}
