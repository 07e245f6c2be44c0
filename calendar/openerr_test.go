package calendar

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/ksi"
)

// TestDamagedFileAtOpen damages the files of a real store — a table, the
// MANIFEST — and checks that opening it fails with one line that names
// the damaged file and says what to do (not an internal dump, and not
// "in use": "block" in a checksum message once read as a lock).
func TestDamagedFileAtOpen(t *testing.T) {
	for _, tc := range []struct {
		name string
		glob string
		harm func(t *testing.T, path string)
	}{
		{"table bytes flipped", "*.sst", flipEvery(4096)},
		{"MANIFEST bytes flipped", "MANIFEST-*", flipEvery(16)},
		{"MANIFEST removed", "MANIFEST-*", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			st, err := OpenStore(dir, StoreOptions{Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			leaves := make([]ksi.Imprint, 20_000)
			for i := range leaves {
				leaves[i] = leafFor(uint64(i))
			}
			if _, err := st.AppendRange(1_800_000_000, leaves, true); err != nil {
				t.Fatal(err)
			}
			if err := st.db.Flush(); err != nil {
				t.Fatal(err)
			}
			st.Close()
			files, _ := filepath.Glob(filepath.Join(dir, tc.glob))
			if len(files) == 0 {
				t.Fatalf("no %s in %s", tc.glob, dir)
			}
			tc.harm(t, files[len(files)-1])
			_, err = OpenStore(dir, StoreOptions{Logger: discardLogger()})
			if err == nil {
				t.Fatal("a damaged store opened")
			}
			msg := err.Error()
			if !errors.Is(err, ErrCorrupt) || strings.Contains(msg, "\n") || strings.Contains(msg, "in use") ||
				!strings.Contains(msg, filepath.Base(files[len(files)-1])) || !strings.Contains(msg, "restore the data directory") {
				t.Fatalf("want one line naming %s and what to do, got %q", filepath.Base(files[len(files)-1]), msg)
			}
			t.Log(msg)
		})
	}
}

// flipEvery flips a byte every n bytes of a file (from byte 8 on), so
// that every block or record a reader needs is damaged.
func flipEvery(n int) func(t *testing.T, path string) {
	return func(t *testing.T, path string) {
		t.Helper()
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i := 8; i < len(b); i += n {
			b[i] ^= 0xff
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
