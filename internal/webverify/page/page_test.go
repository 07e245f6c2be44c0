package page

import (
	"bytes"
	"compress/gzip"
	"context"
	"html"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
)

func TestPage(t *testing.T) {
	keys, err := pki.Init(t.TempDir(), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("offline, no root", func(t *testing.T) {
		b, err := Page(PageOptions{})
		if err != nil {
			t.Fatal(err)
		}
		s := html.UnescapeString(string(b))
		for _, id := range []string{`id="document"`, `id="signature"`, `id="pubstr"`, `id="verify"`, `id="result"`, `id="pubfile"`} {
			if !strings.Contains(s, id) {
				t.Errorf("page lacks %s", id)
			}
		}
		if !strings.Contains(s, "connect-src 'none'") || !strings.Contains(s, "only a publication string") {
			t.Error("a page without a fetch URL must forbid every connection and say it trusts publication strings only")
		}
		checkCSP(t, s)
	})
	t.Run("node", func(t *testing.T) {
		b, err := Page(PageOptions{Root: keys.RootPEM(), Constraints: []string{keys.Constraint()}, PubfileURL: "publications.bin"})
		if err != nil {
			t.Fatal(err)
		}
		s := html.UnescapeString(string(b))
		if !strings.Contains(s, "connect-src 'self'") || !strings.Contains(s, `"pubfileURL":"publications.bin"`) || !strings.Contains(s, `publications@tempel.test`) {
			t.Error("a node's page must fetch its own publications file and carry its root and constraint")
		}
		checkCSP(t, s)
	})
	for _, c := range []struct {
		name string
		opts PageOptions
		want string
	}{
		{"root without constraint", PageOptions{Root: keys.RootPEM()}, "needs a constraint"},
		{"not a root", PageOptions{Root: []byte("hello"), Constraints: []string{"E=a@b"}}, "cannot be read"},
		{"bad constraint", PageOptions{Root: keys.RootPEM(), Constraints: []string{"nonsense"}}, "constraint"},
	} {
		t.Run(c.name, func(t *testing.T) {
			if _, err := Page(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("got %v, want an error with %q", err, c.want)
			}
		})
	}
}

// checkCSP checks that the policy allows exactly the page's inline
// scripts and style, by hash: were one changed without the other, the
// browser would refuse to run it.
func checkCSP(t *testing.T, s string) {
	t.Helper()
	csp := regexp.MustCompile(`http-equiv="Content-Security-Policy" content="([^"]*)"`).FindStringSubmatch(s)
	if csp == nil {
		t.Fatal("no Content-Security-Policy")
	}
	policy := csp[1]
	scripts := regexp.MustCompile(`(?s)<script>(.*?)</script>`).FindAllStringSubmatch(s, -1)
	if len(scripts) != 2 {
		t.Fatalf("%d inline scripts, want 2 (wasm_exec.js and page.js)", len(scripts))
	}
	style := regexp.MustCompile(`(?s)<style>(.*?)</style>`).FindStringSubmatch(s)
	for _, body := range []string{scripts[0][1], scripts[1][1], style[1]} {
		if !strings.Contains(policy, cspHash(body)) {
			t.Errorf("the policy %q does not allow an inline element (%.40q…)", policy, body)
		}
	}
	if !strings.Contains(policy, "default-src 'none'") || strings.Contains(policy, "unsafe-inline") {
		t.Errorf("policy %q is not strict", policy)
	}
}

// TestAssetsUpToDate rebuilds the WebAssembly verifier as
// scripts/genwasm.sh does and compares it with the committed one, and
// wasm_exec.js with the toolchain's. A different Go release builds
// different bytes: then the test skips, saying so.
func TestAssetsUpToDate(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the WebAssembly verifier: skipped in -short")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	goenv := func(name string) string {
		out, err := exec.CommandContext(ctx, "go", "env", name).Output()
		if err != nil {
			t.Fatalf("go env %s: %v", name, err)
		}
		return strings.TrimSpace(string(out))
	}
	stamp, err := os.ReadFile(filepath.Join("assets", "GOVERSION"))
	if err != nil {
		t.Fatal(err)
	}
	if v := goenv("GOVERSION"); v != strings.TrimSpace(string(stamp)) {
		t.Skipf("the assets were built by %s, this toolchain is %s: run make wasm to rebuild them with it", strings.TrimSpace(string(stamp)), v)
	}
	exec, err := os.ReadFile(filepath.Join(goenv("GOROOT"), "lib", "wasm", "wasm_exec.js"))
	if err != nil {
		t.Fatal(err)
	}
	if string(exec) != wasmExecJS {
		t.Error("assets/wasm_exec.js differs from the toolchain's: run make wasm")
	}
	out := filepath.Join(t.TempDir(), "verify.wasm")
	cmd := execGo(ctx, "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w", "-o", out, "../wasm")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	fresh, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(wasmGz))
	if err != nil {
		t.Fatal(err)
	}
	committed, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(fresh, committed) {
		t.Errorf("assets/verify.wasm.gz is out of date (%d bytes committed, %d built): run make wasm and commit the result", len(committed), len(fresh))
	}
}

func execGo(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Env = append(os.Environ(), "GOOS=js", "GOARCH=wasm")
	return cmd
}
