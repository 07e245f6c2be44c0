package node

import (
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/internal/buildinfo"
)

// /metrics says which build is running, in the labels of a gauge of 1.
func TestBuildInfoMetric(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir()})
	r, err := http.Get("http://" + s.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer r.Body.Close()
	body, err := io.ReadAll(r.Body)
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", r.Status)
	}
	i := buildinfo.Get()
	want := `tempel_build_info{goversion="` + i.GoVersion + `",revision="` + i.RevisionLabel() + `",version="` + i.Version + `"} 1`
	if !strings.Contains(string(body), want+"\n") {
		t.Errorf("/metrics lacks %s; build info lines:\n%s", want, grepLines(string(body), "tempel_build_info"))
	}
}

func grepLines(s, sub string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.Contains(l, sub) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
