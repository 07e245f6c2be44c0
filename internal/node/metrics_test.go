package node

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
)

// Paths a caller invents under a served prefix are counted under one
// label: the request metrics do not grow with them.
func TestRequestMetricsBoundedByRoute(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir()})
	for i := range 30 {
		for _, p := range []string{fmt.Sprintf("/v1/made-up-%d", i), fmt.Sprintf("/v1/sign/x%d", i)} {
			r, err := http.Get("http://" + s.addr + p)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, r.Body)
			r.Body.Close()
		}
	}
	mfs, err := s.n.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tempel_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "method" && (strings.HasPrefix(l.GetValue(), "made-up") || strings.HasPrefix(l.GetValue(), "x")) {
					t.Fatalf("request metric labelled with a path the node does not serve: %v", m.GetLabel())
				}
			}
		}
	}
	if v := counterValue(t, s, `tempel_requests_total{interface="rest",method="unknown",status="404"}`); v != 60 {
		t.Errorf("unknown REST paths counted %v times, want 60", v)
	}
}
