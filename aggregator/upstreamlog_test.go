package aggregator

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"testing"
)

// An outage of many failing rounds is logged in two lines, not one per
// round.
func TestUpstreamFailuresLoggedOncePerOutage(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	var l upstreamLog
	for i := 0; i < 50; i++ {
		l.failed(log, errors.New("calendar: not ready: disk full"), 3)
	}
	l.ok(log)
	l.ok(log)
	l.failed(log, errors.New("again"), 1)
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	if len(lines) != 3 {
		t.Fatalf("%d log lines, want 3:\n%s", len(lines), buf.String())
	}
	if !strings.Contains(lines[0], "disk full") || !strings.Contains(lines[1], "failed_rounds=50 failed_requests=150") ||
		!strings.Contains(lines[2], "again") {
		t.Fatalf("log:\n%s", buf.String())
	}
}
