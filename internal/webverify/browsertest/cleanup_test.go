package browsertest

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// hangScript starts chromium with a profile directory of its own (so
// that its processes can be found by it), says so and then never ends,
// as a driver stuck on a page would.
const hangScript = `import { chromium } from "playwright-core";
const ctx = await chromium.launchPersistentContext(process.argv[2], {
  executablePath: process.argv[3],
  args: process.getuid && process.getuid() === 0 ? ["--no-sandbox"] : [],
  timeout: 30000,
});
console.log("launched");
await new Promise(() => {}); // kept alive by the browser's connection
`

// TestDriverKilledClosesBrowser checks that a driver killed at its time
// limit (runCmd's context) leaves no chromium behind, although
// playwright starts chromium in a process group of its own: the test's
// bound on the driver must bound the browser too.
func TestDriverKilledClosesBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("starts chromium: skipped in -short")
	}
	chromium := need(t, "chromium", "Debian package chromium")
	need(t, "node", "Debian package nodejs")
	need(t, "npm", "Debian package npm")
	modules := nodeModules(t)
	dir := t.TempDir()
	profile := filepath.Join(dir, "profile")
	if err := os.WriteFile(filepath.Join(dir, "hang.mjs"), []byte(hangScript), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { // whatever the outcome, no browser outlives the test
		for _, pid := range processesWith(profile) {
			if p, err := os.FindProcess(pid); err == nil {
				p.Kill()
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := command(ctx, dir, "node", "hang.mjs", profile, chromium)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if line != "launched\n" {
		cancel()
		cmd.Wait()
		t.Fatalf("the driver did not start chromium: %q, %v\n%s", line, err, stderr.String())
	}
	if len(processesWith(profile)) == 0 {
		t.Fatal("chromium runs, but no process names its profile: the check below would prove nothing")
	}
	cancel() // the driver's time is up
	stopped := time.Now()
	werr := cmd.Wait()
	t.Logf("driver stopped in %v: %v", time.Since(stopped).Round(time.Millisecond), werr)
	deadline := time.Now().Add(10 * time.Second)
	for left := processesWith(profile); len(left) > 0; left = processesWith(profile) {
		if time.Now().After(deadline) {
			t.Fatalf("chromium processes %v still run after their driver was stopped", left)
		}
		time.Sleep(100 * time.Millisecond) // the next poll, bounded by deadline
	}
}

// processesWith lists the processes whose command line contains s.
func processesWith(s string) []int {
	entries, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err == nil && bytes.Contains(b, []byte(s)) {
			pids = append(pids, pid)
		}
	}
	return pids
}
