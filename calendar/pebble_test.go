package calendar

import (
	"bufio"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// TestOpenErrorInUse: a store another process has open is reported as
// in use, not as damage, with what to do.
func TestOpenErrorInUse(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envCrashChild+"="+dir)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGKILL)
		cmd.Wait()
	}()
	// The child answers once its store is open.
	if !bufio.NewScanner(stdout).Scan() {
		t.Fatal("child answered nothing")
	}
	for _, ro := range []bool{true, false} {
		_, err := OpenStore(filepath.Join(dir, "calendar"), StoreOptions{ReadOnly: ro, Logger: discardLogger()})
		if err == nil || !strings.Contains(err.Error(), "in use by another process") {
			t.Fatalf("read-only %v: %v, want in use by another process", ro, err)
		}
	}
}

// TestOpenRefusesStoreWithoutManifest: a store whose MANIFEST (or the
// marker naming it) is gone while its tables and logs remain is damage,
// reported in one line; opening it for writing must not start a new,
// empty store over the old files (which Pebble would then delete as
// obsolete), whatever command opens it (serve, accept-loss).
func TestOpenRefusesStoreWithoutManifest(t *testing.T) {
	for _, gone := range []string{"marker.manifest.*", "MANIFEST-*"} {
		t.Run(gone, func(t *testing.T) {
			dir := t.TempDir()
			st := openTest(t, dir)
			for r := uint64(0); r < 3; r++ {
				leaves := make([]ksi.Imprint, 100)
				for i := range leaves {
					leaves[i] = leafFor(r*100 + uint64(i))
				}
				if _, err := st.AppendRange(1_800_000_000+r*100, leaves, true); err != nil {
					t.Fatal(err)
				}
				if err := st.db.Flush(); err != nil {
					t.Fatal(err)
				}
			}
			st.Close()
			// Reopened once, the store holds its history in tables only:
			// the WALs that had it are gone.
			openTest(t, dir).Close()
			files, _ := filepath.Glob(filepath.Join(dir, gone))
			if len(files) == 0 {
				t.Fatalf("no %s in the store", gone)
			}
			for _, f := range files {
				if err := os.Remove(f); err != nil {
					t.Fatal(err)
				}
			}
			tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
			for _, ro := range []bool{true, false} {
				st, err := OpenStore(dir, StoreOptions{ReadOnly: ro, Logger: discardLogger()})
				if err == nil {
					_, last, has := st.Head()
					st.Close()
					t.Fatalf("read-only %v: opened (has %v, last %d)", ro, has, last)
				}
				if msg := err.Error(); !errors.Is(err, ErrCorrupt) || !strings.Contains(msg, "MANIFEST") || strings.Contains(msg, "\n") {
					t.Fatalf("read-only %v: %q, want one line saying the MANIFEST is damaged or missing", ro, msg)
				}
			}
			if after, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(after) != len(tables) {
				t.Fatalf("tables %v, before %v: the refused open removed some", after, tables)
			}
		})
	}
}
