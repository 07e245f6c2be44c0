package cli

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestManPages writes the pages with the real command and checks that
// each visible command has its page naming every one of its flags, and
// that groff (when installed) formats them without a warning.
func TestManPages(t *testing.T) {
	dir := t.TempDir()
	var stdout, stderr bytes.Buffer
	if code := Run(context.Background(), []string{"tempel", "man", dir}, &stdout, &stderr); code != ExitOK {
		t.Fatalf("tempel man: exit %d: %s", code, stderr.String())
	}
	app := App()
	read := func(name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		return string(b)
	}
	whole := read("tempel.1")
	if !strings.HasPrefix(whole, ".nh\n.TH tempel 1") {
		t.Errorf("tempel.1 does not start with a section-1 title: %.40q", whole)
	}
	for _, cmd := range app.VisibleCommands() {
		if cmd.Name == "help" {
			continue
		}
		page := read("tempel-" + cmd.Name + ".1")
		if !strings.Contains(whole, cmd.Name) {
			t.Errorf("tempel.1 does not mention command %s", cmd.Name)
		}
		for _, f := range cmd.VisibleFlags() {
			name := f.Names()[0]
			if !strings.Contains(page, `\-\-`+name) && !strings.Contains(page, "--"+name) {
				t.Errorf("tempel-%s.1 does not document --%s", cmd.Name, name)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "tempel-help.1")); err == nil {
		t.Error("a page was written for the help command")
	}
	groff, err := exec.LookPath("groff")
	if err != nil {
		t.Log("groff not installed: pages not formatted")
		return
	}
	pages, _ := filepath.Glob(filepath.Join(dir, "*.1"))
	args := append([]string{"-k", "-man", "-Tutf8", "-ww", "-z"}, pages...)
	out, err := exec.Command(groff, args...).CombinedOutput()
	if err != nil || len(out) > 0 {
		t.Errorf("groff: %v\n%s", err, out)
	}
}
