package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/ksi"
)

// TestCalendarCheckMissingStore: a data directory whose watermark says
// seconds were answered but whose store is gone is damaged (exit 1), not
// a usage error; without a watermark it is a wrong --data-dir (exit 3).
func TestCalendarCheckMissingStore(t *testing.T) {
	dir := t.TempDir()
	run := func() (int, string) {
		var stdout, stderr bytes.Buffer
		code := Run(context.Background(), []string{"tempel", "calendar", "check", "--data-dir", dir}, &stdout, &stderr)
		return code, stdout.String() + stderr.String()
	}
	if code, out := run(); code != ExitError {
		t.Fatalf("no store, no watermark: exit %d: %s", code, out)
	}
	w, _, err := calendar.OpenWatermark(filepath.Join(dir, "watermark"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Answered(1_800_000_000, ksi.Imprint(append([]byte{1}, make([]byte, 32)...))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	code, out := run()
	if code != ExitFailed || !strings.Contains(out, "PROBLEM:") || !strings.Contains(out, "is missing") ||
		!strings.Contains(out, "answered history lost") {
		t.Fatalf("store gone under a watermark: exit %d: %s", code, out)
	}
	if _, err := os.Stat(filepath.Join(dir, "calendar")); err == nil {
		t.Fatal("check created a store")
	}
}

// TestAcceptLossEmptyStore: an operator who lost the whole store accepts
// it; the message says the store was empty, and the calendar starts again
// at the marked second.
func TestAcceptLossEmptyStore(t *testing.T) {
	dir := t.TempDir()
	w, _, err := calendar.OpenWatermark(filepath.Join(dir, "watermark"), true)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Answered(1_800_000_000, ksi.Imprint(append([]byte{1}, make([]byte, 32)...))); err != nil {
		t.Fatal(err)
	}
	w.Close()
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"tempel", "calendar", "accept-loss", "--data-dir", dir, "--reason", "disk lost"}, &stdout, &stderr)
	if code != ExitOK || !strings.Contains(stdout.String(), "the watermark had second 1800000000, the store was empty") {
		t.Fatalf("exit %d: %s%s", code, stdout.String(), stderr.String())
	}
	stdout.Reset()
	if code := Run(context.Background(), []string{"tempel", "calendar", "check", "--data-dir", dir}, &stdout, &stderr); code != ExitOK {
		t.Fatalf("check after accepting: exit %d: %s", code, stdout.String())
	}
}

// TestCalendarCheckEmptyStoreDirectory: an empty calendar directory with
// no watermark is a calendar not yet begun: clean.
func TestCalendarCheckEmptyStoreDirectory(t *testing.T) {
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "calendar"), 0o700); err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"tempel", "calendar", "check", "--data-dir", dir}, &stdout, &stderr)
	if code != ExitOK || !strings.Contains(stdout.String(), "clean") {
		t.Fatalf("exit %d: %s%s", code, stdout.String(), stderr.String())
	}
}
