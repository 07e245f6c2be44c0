package buildinfo

import (
	"runtime"
	"strings"
	"testing"
)

func TestGet(t *testing.T) {
	i := Get()
	if i.Version != Version {
		t.Errorf("Version %q, want %q", i.Version, Version)
	}
	if i.GoVersion != runtime.Version() {
		t.Errorf("GoVersion %q, want %q", i.GoVersion, runtime.Version())
	}
	if i.Revision == "" {
		t.Error("empty Revision: an unrecorded revision must read \"unknown\"")
	}
}

func TestString(t *testing.T) {
	for _, c := range []struct {
		in   Info
		want string
	}{
		{Info{Version: "v1.2.3", Revision: "abc", Time: "2026-12-06T15:00:00Z", GoVersion: "go1.26.8"},
			"tempel v1.2.3 (revision abc, 2026-12-06T15:00:00Z, go1.26.8)"},
		{Info{Version: "devel", Revision: "abc", Modified: true, GoVersion: "go1.26.8"},
			"tempel devel (revision abc-dirty, go1.26.8)"},
	} {
		if got := c.in.String(); got != c.want {
			t.Errorf("String() = %q, want %q", got, c.want)
		}
	}
	if !strings.HasSuffix(Info{Revision: "r", Modified: true}.RevisionLabel(), "-dirty") {
		t.Error("a modified tree's revision label lacks -dirty")
	}
}
