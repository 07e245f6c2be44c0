package layout

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
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

// TestImportsPointDown enforces the layout rules: the pure core imports
// only the standard library and x/crypto; the verifier adds only its
// PKCS#7 library; services never import each other or the node assembly.
func TestImportsPointDown(t *testing.T) {
	root := filepath.Join("..", "..")
	rules := []struct {
		dir   string
		allow func(p string) bool
	}{
		{"ksi", func(p string) bool {
			return isStd(p) || strings.HasPrefix(p, "golang.org/x/crypto/") || strings.HasPrefix(p, module+"/ksi")
		}},
		{"ksi/tlv", isStd},
		{"ksi/calendartree", func(p string) bool { return isStd(p) || p == module+"/ksi" }},
		{"ksi/pdu", func(p string) bool {
			return isStd(p) || strings.HasPrefix(p, "golang.org/x/crypto/") || strings.HasPrefix(p, module+"/ksi")
		}},
		{"verifier", func(p string) bool {
			return isStd(p) || strings.HasPrefix(p, module+"/ksi") || p == "github.com/smallstep/pkcs7"
		}},
		{"calendar", func(p string) bool {
			return !strings.HasPrefix(p, module+"/aggregator") && !strings.HasPrefix(p, module+"/internal/node") &&
				!strings.HasPrefix(p, module+"/proto") && !strings.HasPrefix(p, module+"/cli")
		}},
		{"aggregator", func(p string) bool {
			return !strings.HasPrefix(p, module+"/calendar") && !strings.HasPrefix(p, module+"/internal/node") && !strings.HasPrefix(p, module+"/cli")
		}},
		{"client", func(p string) bool {
			return !strings.HasPrefix(p, module+"/calendar") && !strings.HasPrefix(p, module+"/aggregator") &&
				!strings.HasPrefix(p, module+"/internal/node") && !strings.HasPrefix(p, module+"/cli")
		}},
	}
	for _, r := range rules {
		for _, p := range imports(t, filepath.Join(root, r.dir)) {
			if !r.allow(p) {
				t.Errorf("%s imports %s, against docs/design/architecture.md#code-layout", r.dir, p)
			}
		}
	}
}
