package bench

import (
	"context"
	"fmt"
	"strings"
)

// Targets of issue 14, as ratios of answered rates to the baseline's.
const (
	TargetFrontDoor = 0.8
	TargetUnary     = 2
	TargetStream    = 20
)

// DefaultBaselineConnsUsed is the baseline phase's connection bound: the
// baseline answers in milliseconds, so a thousand connections keep it
// busy, and when it is offered more than it can answer, more connections
// would only add dials (thousands at once overflow its accept queue and
// time out) to what the cores must do. It is the bound that gives the
// baseline its best throughput, so the front door's ratio errs low.
const DefaultBaselineConnsUsed = 1024

// ratioSlack is how far below a target a ratio may be and still meet
// it: an open loop at exactly the target rate answers a little less than
// it offers when the run's last send falls on the edge of the measured
// time (a batch carries 512 requests).
const ratioSlack = 0.01

// CompareConfig is one `tempel bench --mode rfc3161` run: the baseline
// responder, Tempel's front door and Tempel's native signing, one after
// the other, each for Base.Warmup + Base.Duration.
type CompareConfig struct {
	// Base is the load of the RFC 3161 phases (Server, TLS, login,
	// Concurrency, Rate, durations); Mode is ignored.
	Base Config
	// Baseline is the HOST:PORT of the baseline responder (plain HTTP);
	// "" skips that phase.
	Baseline string
	// BaselineConns bounds the baseline phase's connections (0:
	// DefaultBaselineConnsUsed).
	BaselineConns int
	// UnaryRate and StreamRate are the rates offered to native unary
	// signing and to the streaming API (batch mode); 0 skips the phase.
	// With Base.Rate 0 (closed loop) unary runs closed loop too.
	UnaryRate, StreamRate float64
}

// Comparison is what a CompareConfig run measured. A ratio is a phase's
// throughput (answers received in the measured time) over the
// baseline's: a capacity ratio when both were offered more than they
// answer, a lower bound when the phase answered all it was offered.
type Comparison struct {
	Baseline       *Result `json:"baseline,omitempty"`
	FrontDoor      *Result `json:"front_door"`
	Unary          *Result `json:"unary,omitempty"`
	Stream         *Result `json:"stream,omitempty"`
	FrontDoorRatio float64 `json:"front_door_ratio,omitempty"`
	UnaryRatio     float64 `json:"unary_ratio,omitempty"`
	StreamRatio    float64 `json:"stream_ratio,omitempty"`
}

// Compare runs the phases of cfg in turn. A phase that fails ends the
// run with the phases so far and the error.
func Compare(ctx context.Context, cfg CompareConfig) (*Comparison, error) {
	out := &Comparison{}
	phase := func(name string, c Config) (*Result, error) {
		res, err := Run(ctx, c)
		if err != nil {
			return res, fmt.Errorf("%s: %w", name, err)
		}
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		res.Mode = name
		return res, nil
	}
	var err error
	if cfg.Baseline != "" {
		c := cfg.Base
		c.Mode, c.Server, c.TLS, c.Login, c.Key, c.TSAWantKSI = ModeTSA, cfg.Baseline, nil, "", "", false
		c.TSAConns = cfg.BaselineConns
		if c.TSAConns <= 0 {
			c.TSAConns = DefaultBaselineConnsUsed
		}
		if out.Baseline, err = phase("baseline", c); err != nil {
			return out, err
		}
	}
	c := cfg.Base
	c.Mode, c.TSAWantKSI = ModeTSA, true
	if out.FrontDoor, err = phase("front-door", c); err != nil {
		return out, err
	}
	if out.Baseline != nil && out.FrontDoor.TSAKey != out.Baseline.TSAKey {
		return out, fmt.Errorf("bench: the server's TSA key is %s, the baseline's %s: the ratio would compare different keys", out.FrontDoor.TSAKey, out.Baseline.TSAKey)
	}
	if cfg.UnaryRate > 0 {
		c := cfg.Base
		c.Mode, c.Rate = ModeUnary, cfg.UnaryRate
		if cfg.Base.Rate == 0 {
			c.Rate = 0
		}
		if out.Unary, err = phase("unary", c); err != nil {
			return out, err
		}
	}
	if cfg.StreamRate > 0 {
		c := cfg.Base
		// Two streams carry 400 k/s (the README's figure); more only
		// cost memory for their windows.
		c.Mode, c.Rate, c.Concurrency = ModeBatch, cfg.StreamRate, min(cfg.Base.Concurrency, 2)
		if out.Stream, err = phase("stream", c); err != nil {
			return out, err
		}
	}
	out.ratios()
	return out, nil
}

func (c *Comparison) ratios() {
	if c.Baseline == nil || c.Baseline.Throughput <= 0 {
		return
	}
	b := c.Baseline.Throughput
	if c.FrontDoor != nil {
		c.FrontDoorRatio = c.FrontDoor.Throughput / b
	}
	if c.Unary != nil {
		c.UnaryRatio = c.Unary.Throughput / b
	}
	if c.Stream != nil {
		c.StreamRatio = c.Stream.Throughput / b
	}
}

func (c *Comparison) String() string {
	var sb strings.Builder
	line := func(r *Result, ratio, target float64) {
		if r == nil {
			return
		}
		sb.WriteString(r.String())
		if r.TSAKey != "" {
			fmt.Fprintf(&sb, "; key %s", r.TSAKey)
		}
		fmt.Fprintf(&sb, "\n  throughput %.0f/s (answers received in the measured time)", r.Throughput)
		if ratio > 0 {
			verdict := "met"
			if ratio < target*(1-ratioSlack) || r.Errors > 0 {
				verdict = "NOT met"
			}
			fmt.Fprintf(&sb, " = %.2fx the baseline (target %gx: %s)", ratio, target, verdict)
		}
		sb.WriteByte('\n')
	}
	line(c.Baseline, 0, 0)
	line(c.FrontDoor, c.FrontDoorRatio, TargetFrontDoor)
	line(c.Unary, c.UnaryRatio, TargetUnary)
	line(c.Stream, c.StreamRatio, TargetStream)
	return strings.TrimSuffix(sb.String(), "\n")
}
