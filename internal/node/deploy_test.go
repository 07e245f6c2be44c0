package node

import (
	"context"
	"encoding/json"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// deployMetric matches the metric names in PromQL, loosely: the families
// a node exports (Tempel's own, the gRPC server's, Go's and the process').
var deployMetric = regexp.MustCompile(`\b(?:tempel|grpc_server|go|process)_[a-zA-Z0-9_]+`)

// Every metric the Grafana dashboard and the Prometheus alert rules in
// deploy/ name exists on the /metrics of a real node: a single calendar
// with its aggregator (after a signature and an RFC 3161 request) or a
// raft member, so that a renamed metric cannot leave a panel blank or an
// alert silent.
func TestDeployMetricsExist(t *testing.T) {
	if testing.Short() {
		t.Skip("starts two nodes")
	}
	want := deployDashboardMetrics(t)
	rules, err := os.ReadFile("../../deploy/prometheus/alerts.yml")
	if err != nil {
		t.Fatal(err)
	}
	want = append(want, yamlExprMetrics(t, string(rules))...)
	slices.Sort(want)
	want = slices.Compact(want)
	if len(want) < 30 {
		t.Fatalf("only %d metric names found in deploy/: %v", len(want), want)
	}
	have := metricNames(singleNodeMetrics(t))
	for name := range metricNames(clusterMemberMetrics(t)) {
		have[name] = true
	}
	for _, name := range want {
		if !have[name] {
			t.Errorf("deploy/ names %s, which no node exports", name)
		}
	}
}

// deployDashboardMetrics returns the metric names in every string of
// the dashboard: panel expressions and template queries.
func deployDashboardMetrics(t *testing.T) []string {
	b, err := os.ReadFile("../../deploy/grafana/tempel.json")
	if err != nil {
		t.Fatal(err)
	}
	var d any
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	var names []string
	var walk func(v any)
	walk = func(v any) {
		switch v := v.(type) {
		case string:
			names = append(names, deployMetric.FindAllString(v, -1)...)
		case []any:
			for _, x := range v {
				walk(x)
			}
		case map[string]any:
			for _, x := range v {
				walk(x)
			}
		}
	}
	walk(d)
	return names
}

// yamlExprMetrics returns the metric names in the rules' expressions:
// the lines from an "expr:" up to the next key, comments left out.
func yamlExprMetrics(t *testing.T, rules string) []string {
	var names []string
	exprs := 0
	in := false
	for _, line := range strings.Split(rules, "\n") {
		trimmed := strings.TrimSpace(line)
		if strings.HasPrefix(trimmed, "#") {
			continue
		}
		if strings.HasPrefix(trimmed, "expr:") {
			in = true
			exprs++
			names = append(names, deployMetric.FindAllString(trimmed, -1)...)
			continue
		}
		if in && (trimmed == "" || regexp.MustCompile(`^[a-z_]+:`).MatchString(trimmed) || strings.HasPrefix(trimmed, "- ")) {
			in = false
		}
		if in {
			names = append(names, deployMetric.FindAllString(trimmed, -1)...)
		}
	}
	if exprs < 10 {
		t.Fatalf("only %d rule expressions in alerts.yml", exprs)
	}
	return names
}

// metricNames returns the sample names of a /metrics text.
func metricNames(text string) map[string]bool {
	names := make(map[string]bool)
	for _, line := range strings.Split(text, "\n") {
		if line == "" || line[0] == '#' {
			continue
		}
		if i := strings.IndexAny(line, "{ "); i > 0 {
			names[line[:i]] = true
		}
	}
	return names
}

// singleNodeMetrics signs once over gRPC and asks the TSA once (a
// malformed request, rejected), so that every labelled family has a
// series, and returns the node's /metrics.
func singleNodeMetrics(t *testing.T) string {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tempelv1.NewSignerClient(dial(t, s.addr)).Sign(ctx, &tempelv1.SignRequest{Hash: docHash("deploy")}); err != nil {
		t.Fatal(err)
	}
	if resp, _ := postTSA(t, s.addr, []byte("not a request"), "application/timestamp-query"); resp.StatusCode != 200 {
		t.Fatalf("TSA: %s, want 200 with a rejection", resp.Status)
	}
	return metricsText(t, s)
}

// clusterMemberMetrics returns the /metrics of the only member of a
// one-member raft cluster, once it leads.
func clusterMemberMetrics(t *testing.T) string {
	ln := listen(t)
	s := startOn(t, ln, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour,
		NodeID: 1, Cluster: map[uint64]string{1: ln.Addr().String()}})
	deadline := time.Now().Add(30 * time.Second)
	for {
		m := metricsText(t, s)
		if strings.Contains(m, "\ntempel_raft_is_leader 1\n") {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("the member did not lead within 30 s:\n%s", m)
		}
		time.Sleep(20 * time.Millisecond) // polling the condition, with a deadline
	}
}
