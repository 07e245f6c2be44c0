package ntpcheck

import (
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// TestMonitorVerdict walks the verdict through its states with queries'
// outcomes at chosen times: trust needs an answer within the bound, a
// failed query keeps the last verdict until the last answer is stale.
func TestMonitorVerdict(t *testing.T) {
	var faults []error
	m, err := NewMonitor(Config{Server: "ntp.example", Interval: time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		SetFault: func(err error) { faults = append(faults, err) }})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Fault(); !errors.Is(err, ErrClock) || !strings.Contains(err.Error(), "waiting for the first answer from ntp ntp.example") {
		t.Fatalf("before any answer: %v", err)
	}
	t0 := time.Unix(1_800_000_000, 0)
	lost := errors.New("lost")
	steps := []struct {
		at     time.Duration
		offset time.Duration
		qerr   error
		want   string // "" trusted
	}{
		{0, 0, lost, "clock: no answer yet from ntp ntp.example (lost)"},
		{1 * time.Second, 100 * time.Millisecond, nil, ""},
		{2 * time.Second, 500 * time.Millisecond, nil, ""}, // the bound itself is trusted
		{3 * time.Second, 1234 * time.Millisecond, nil, "clock: offset +1.234s against ntp ntp.example exceeds 500ms"},
		{4 * time.Second, 0, lost, "clock: offset +1.234s against ntp ntp.example exceeds 500ms"},
		{5 * time.Second, -501 * time.Millisecond, nil, "clock: offset -501ms against ntp ntp.example exceeds 500ms"},
		{6 * time.Second, 10 * time.Millisecond, nil, ""},
		{11 * time.Second, 0, lost, ""}, // 5 s since the answer: not stale yet
		{12 * time.Second, 0, lost, "clock: no answer from ntp ntp.example for 6s (stale after 5s): lost"},
		{13 * time.Second, 0, nil, ""},
	}
	for i, s := range steps {
		var q error = s.qerr
		m.verdict(Sample{Offset: s.offset}, q, t0.Add(s.at))
		got := ""
		if err := m.Fault(); err != nil {
			got = err.Error()
			if !errors.Is(err, ErrClock) {
				t.Errorf("step %d: %v is not ErrClock", i, err)
			}
		}
		if got != s.want {
			t.Errorf("step %d: fault %q, want %q", i, got, s.want)
		}
	}
	// SetFault hears each change once: no repeats for the same verdict.
	var seq []string
	for _, f := range faults {
		seq = append(seq, fmtErr(f))
	}
	want := []string{steps[0].want, "", steps[3].want, steps[5].want, "", steps[8].want, ""}
	if strings.Join(seq, "|") != strings.Join(want, "|") {
		t.Errorf("SetFault calls:\n%q\nwant\n%q", seq, want)
	}
}

func TestNewMonitorRefuses(t *testing.T) {
	for _, c := range []Config{
		{},
		{Server: "x", Interval: -time.Second},
		{Server: "x", Interval: time.Minute, Stale: time.Second},
	} {
		c.SetFault = func(error) {}
		if _, err := NewMonitor(c); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
	m, err := NewMonitor(Config{Server: "x", SetFault: func(error) {}})
	if err != nil || m.cfg.Interval != DefaultInterval || m.cfg.MaxOffset != DefaultMaxOffset || m.cfg.Stale != 5*DefaultInterval {
		t.Errorf("defaults: %+v %v", m.cfg, err)
	}
}
