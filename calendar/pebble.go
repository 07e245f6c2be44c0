package calendar

import (
	"fmt"
	"log/slog"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// pebbleFS is Pebble's file-system interface; tests pass an in-memory or
// fault-injecting one.
type pebbleFS = vfs.FS

// pebbleLogger sends Pebble's messages to slog instead of stderr.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble on errors it cannot continue from, such as a
// failed WAL write. Pebble expects it not to return (returning would let a
// failed commit look successful), so it panics with a pebbleFatal, which
// the store's writers recover into a failed store; anywhere else it stops
// the process, which is safe: nothing unsaved was answered.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, "component", "pebble", "fatal", true)
	panic(pebbleFatal{msg})
}

// pebbleFatal is the panic value of pebbleLogger.Fatalf.
type pebbleFatal struct{ msg string }

func (f pebbleFatal) Error() string { return "pebble: " + f.msg }
