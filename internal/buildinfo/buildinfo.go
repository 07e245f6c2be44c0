// Package buildinfo says which build of tempel is running: the release
// version stamped by the Makefile, and the VCS revision and Go version
// the toolchain recorded in the binary.
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release version, set at link time by the Makefile:
//
//	go build -ldflags "-X github.com/tempel-ksi/tempel/internal/buildinfo.Version=v1.2.3"
//
// A plain go build leaves it "devel".
var Version = "devel"

// Info describes one build.
type Info struct {
	Version   string // release version, "devel" when not stamped
	Revision  string // VCS revision, "unknown" when the build did not record it
	Time      string // commit time (RFC 3339), "" when not recorded
	Modified  bool   // the work tree had uncommitted changes
	GoVersion string // Go toolchain version
}

// Get returns the build's description. Fields the toolchain did not
// record (go run, go test, builds outside a VCS checkout) say so rather
// than being guessed.
func Get() Info {
	info := Info{Version: Version, Revision: "unknown", GoVersion: runtime.Version()}
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return info
	}
	if bi.GoVersion != "" {
		info.GoVersion = bi.GoVersion
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			info.Revision = s.Value
		case "vcs.time":
			info.Time = s.Value
		case "vcs.modified":
			info.Modified = s.Value == "true"
		}
	}
	return info
}

// RevisionLabel is the revision with a "-dirty" suffix when the work
// tree was modified: one value for logs and metrics labels.
func (i Info) RevisionLabel() string {
	if i.Modified {
		return i.Revision + "-dirty"
	}
	return i.Revision
}

// String is the human form printed by "tempel version":
//
//	tempel devel (revision 1a2b3c4-dirty, 2026-12-06T15:00:00Z, go1.26.8)
func (i Info) String() string {
	when := ""
	if i.Time != "" {
		when = ", " + i.Time
	}
	return fmt.Sprintf("tempel %s (revision %s%s, %s)", i.Version, i.RevisionLabel(), when, i.GoVersion)
}
