//go:build unix

package server

import (
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// A users file that is a FIFO is refused at once: reading it would wait
// for a writer for ever, and the node would never start.
func TestLoadUsersRefusesFIFO(t *testing.T) {
	p := filepath.Join(t.TempDir(), "users")
	if err := syscall.Mkfifo(p, 0o600); err != nil {
		t.Skipf("mkfifo: %v", err)
	}
	done := make(chan error, 1)
	go func() { _, err := LoadUsers(p); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Fatalf("LoadUsers(FIFO): %v, want not a regular file", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("LoadUsers(FIFO) still waiting after 10 s")
	}
}
