package layout

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

const module = "github.com/tempel-ksi/tempel"

// imports returns the non-test imports of the package in dir.
func imports(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, e := range entries {
		n := e.Name()
		if e.IsDir() || !strings.HasSuffix(n, ".go") || strings.HasSuffix(n, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(dir, n), nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			p, _ := strconv.Unquote(imp.Path.Value)
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	return out
}

func isStd(p string) bool { return !strings.Contains(strings.Split(p, "/")[0], ".") }

// within reports whether p is package dir or below it.
func within(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// pureCore allows what a package of the pure core may import: the
// standard library, x/crypto and the core itself, nothing else of the
// project.
func pureCore(p string) bool {
	return isStd(p) || strings.HasPrefix(p, "golang.org/x/crypto/") || within(p, module+"/ksi")
}

// noInternals allows anything but the server side: internal/, the
// services and the CLI. The SDK and the load generator are built on the
// public packages only, as any user's code would be.
func noInternals(p string) bool {
	for _, d := range []string{"internal", "calendar", "aggregator", "cli", "cmd"} {
		if within(p, module+"/"+d) {
			return false
		}
	}
	return true
}

// internalUsers are the packages that may import internal/: the server
// side (services, CLI, command), internal/ itself. Everything else,
// public packages and examples, stands on the public API.
var internalUsers = []string{"aggregator", "calendar", "cli", "cmd", "internal"}

// packages returns the directories under root, relative to it and
// slash-separated, that hold non-test Go files.
func packages(t *testing.T, root string) []string {
	t.Helper()
	var dirs []string
	seen := map[string]bool{}
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
			return filepath.SkipDir
		}
		if d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		rel, err := filepath.Rel(root, filepath.Dir(path))
		if err != nil {
			return err
		}
		if rel = filepath.ToSlash(rel); !seen[rel] {
			seen[rel] = true
			dirs = append(dirs, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return dirs
}

// TestImportsPointDown enforces the layout rules: the pure core imports
// only the standard library and x/crypto; the verifier adds only its
// PKCS#7 library; services never import each other or the node assembly;
// the SDK and the load generator import nothing of the server side.
func TestImportsPointDown(t *testing.T) {
	root := filepath.Join("..", "..")
	rules := []struct {
		dir   string
		allow func(p string) bool
	}{
		{"ksi/tlv", isStd},
		{"internal/schedule", isStd},
		{"internal/raftlog", func(p string) bool { // the raft log knows nothing of the calendar
			return isStd(p) || within(p, "github.com/cockroachdb/pebble/v2") || within(p, "go.etcd.io/raft/v3") || within(p, "google.golang.org/protobuf")
		}},
		{"internal/raftnode", func(p string) bool { // the generic raft member knows nothing of the calendar either
			return isStd(p) || p == module+"/internal/raftlog" || within(p, "go.etcd.io/raft/v3") ||
				within(p, "google.golang.org/grpc") || within(p, "google.golang.org/protobuf")
		}},
		{"ksi/calendartree", func(p string) bool { return isStd(p) || p == module+"/ksi" }},
		{"ksi/calendarstep", func(p string) bool { // the step is the tree arithmetic and the top tree, nothing else
			return isStd(p) || p == module+"/ksi" || p == module+"/ksi/calendartree" || p == module+"/ksi/round"
		}},
		{"ksi/pdu", func(p string) bool {
			return isStd(p) || strings.HasPrefix(p, "golang.org/x/crypto/") || strings.HasPrefix(p, module+"/ksi")
		}},
		{"tsp", pureCore}, // the RFC 3161 core: no I/O, no services
		{"pdfts", isStd},  // PDF document time-stamps found in a file's bytes
		{"tsa", func(p string) bool { // the TSA service: the RFC 3161 core and the KSI core, signing through a function
			return isStd(p) || p == module+"/tsp" || within(p, module+"/ksi") || within(p, "github.com/prometheus/client_golang")
		}},
		{"verifier", func(p string) bool {
			return isStd(p) || within(p, module+"/ksi") || p == "github.com/smallstep/pkcs7"
		}},
		{"calendar", func(p string) bool {
			return !strings.HasPrefix(p, module+"/aggregator") && !strings.HasPrefix(p, module+"/internal/node") &&
				!strings.HasPrefix(p, module+"/proto") && !strings.HasPrefix(p, module+"/cli")
		}},
		{"aggregator", func(p string) bool {
			return !strings.HasPrefix(p, module+"/calendar") && !strings.HasPrefix(p, module+"/internal/node") && !strings.HasPrefix(p, module+"/cli")
		}},
		{"client", noInternals},
		{"bench", noInternals},
	}
	for _, r := range rules {
		for _, p := range imports(t, filepath.Join(root, r.dir)) {
			if !r.allow(p) {
				t.Errorf("%s imports %s, against docs/design/architecture.md#code-layout", r.dir, p)
			}
		}
	}
	for _, dir := range packages(t, root) {
		core := within(dir, "ksi")
		server := slices.ContainsFunc(internalUsers, func(u string) bool { return within(dir, u) })
		for _, p := range imports(t, filepath.Join(root, filepath.FromSlash(dir))) {
			if core && !pureCore(p) {
				t.Errorf("%s imports %s: the pure core imports nothing of the project outside ksi (docs/design/architecture.md#code-layout)", dir, p)
			}
			if !server && within(p, module+"/internal") {
				t.Errorf("%s imports %s: internal/ is for the services, the CLI and the command only (docs/design/architecture.md#code-layout)", dir, p)
			}
		}
	}
}

// The rules themselves: each refuses what it is there to refuse, so that a
// rule that allows everything cannot pass unnoticed.
func TestLayoutRules(t *testing.T) {
	for _, c := range []struct {
		name  string
		allow func(string) bool
		p     string
		want  bool
	}{
		{"core", pureCore, module + "/ksi/tlv", true},
		{"core", pureCore, "golang.org/x/crypto/ripemd160", true},
		{"core", pureCore, module + "/verifier", false},
		{"core", pureCore, module + "/ksifake", false},
		{"core", pureCore, module + "/internal/server", false},
		{"core", pureCore, "github.com/cockroachdb/pebble", false},
		{"sdk", noInternals, module + "/ksi/round", true},
		{"sdk", noInternals, module + "/proto/tempel/v1", true},
		{"sdk", noInternals, module + "/internal/server", false},
		{"sdk", noInternals, module + "/aggregator", false},
		{"sdk", noInternals, module + "/cli", false},
	} {
		if got := c.allow(c.p); got != c.want {
			t.Errorf("%s rule on %s: %v, want %v", c.name, c.p, got, c.want)
		}
	}
	dirs := packages(t, filepath.Join("..", ".."))
	for _, want := range []string{"ksi", "ksi/round", "client", "bench", "internal/node", "cmd/tempel"} {
		if !slices.Contains(dirs, want) {
			t.Errorf("package walk misses %s (found %v)", want, dirs)
		}
	}
}
