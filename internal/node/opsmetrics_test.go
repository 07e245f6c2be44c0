package node

import (
	"strconv"
	"strings"
	"testing"
	"time"
)

// sampleValue returns the value of an unlabelled series in a /metrics
// text; ok false when it is absent.
func sampleValue(text, name string) (v float64, ok bool) {
	for _, line := range strings.Split(text, "\n") {
		if rest, found := strings.CutPrefix(line, name+" "); found {
			f, err := strconv.ParseFloat(rest, 64)
			return f, err == nil
		}
	}
	return 0, false
}

// The gauges the alert rules watch report the node's own settings and
// state: ready once the calendar runs, the budget's size, the reserve
// given, a real free space and the publication period.
func TestOpsMetrics(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, MinFreeBytes: 12345})
	var m string
	for deadline := time.Now().Add(30 * time.Second); ; {
		m = metricsText(t, s)
		if v, _ := sampleValue(m, "tempel_ready"); v == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("tempel_ready not 1 within 30 s (ready: %v)", s.n.ready())
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, with a deadline
	}
	for name, want := range map[string]float64{
		"tempel_calendar_disk_reserve_bytes": 12345,
		"tempel_publication_period_seconds":  3600,
		"tempel_memory_budget_bytes":         float64(s.n.h.budget.Limit()),
		"tempel_memory_budget_refused_total": 0,
	} {
		if v, ok := sampleValue(m, name); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", name, v, ok, want)
		}
	}
	if v, ok := sampleValue(m, "tempel_calendar_disk_free_bytes"); !ok || !(v > 0) {
		t.Errorf("tempel_calendar_disk_free_bytes = %v (present %v), want > 0", v, ok)
	}
	if v, ok := sampleValue(m, "tempel_publication_last_time_seconds"); !ok || v < 0 || v > float64(time.Now().Unix()) {
		t.Errorf("tempel_publication_last_time_seconds = %v (present %v)", v, ok)
	}
	if s.n.h.budget.Limit() <= 0 {
		t.Errorf("budget limit %d", s.n.h.budget.Limit())
	}
}
