package raftlog

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/cockroachdb/pebble/v2"
)

// pebbleLogger sends Pebble's messages to slog instead of stderr.
type pebbleLogger struct{ log *slog.Logger }

func (l pebbleLogger) Infof(format string, args ...any) {
	l.log.Debug(fmt.Sprintf(format, args...), "component", "pebble")
}

func (l pebbleLogger) Errorf(format string, args ...any) {
	l.log.Error(fmt.Sprintf(format, args...), "component", "pebble")
}

// Fatalf is called by Pebble on errors it cannot continue from (a failed
// WAL write). Returning would let a failed commit look successful, so it
// panics; Open recovers the panic into an error, and anywhere else it
// stops the process, which is safe: nothing unsaved was acknowledged.
func (l pebbleLogger) Fatalf(format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	l.log.Error(msg, "component", "pebble", "fatal", true)
	panic(pebbleFatal(msg))
}

type pebbleFatal string

// openPebble opens (or creates) the database in dir.
func openPebble(dir string, opts Options) (db *pebble.DB, err error) {
	defer func() {
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			db, err = nil, fmt.Errorf("%w: %s: %s", ErrCorrupt, dir, string(f))
		}
	}()
	po := &pebble.Options{
		Logger: pebbleLogger{opts.Logger},
		FS:     opts.FS,
		EventListener: &pebble.EventListener{DataCorruption: func(info pebble.DataCorruptionInfo) {
			// The read that found it fails with an error; this says
			// which file, once per read.
			opts.Logger.Error("raft log file damaged", "file", info.Path, "err", fmt.Sprint(info.Details))
		}},
	}
	if opts.FS == nil && hasData(dir) {
		// Tables or a WAL without the MANIFEST naming them are a
		// damaged log, not a new one: Pebble would start afresh and
		// delete them as obsolete.
		po.ErrorIfNotExists = true
	}
	db, err = pebble.Open(dir, po)
	if err != nil {
		first, _, _ := strings.Cut(err.Error(), "\n")
		if errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s: a file of the database is missing: %s", ErrCorrupt, dir, first)
		}
		if errors.Is(err, pebble.ErrDBDoesNotExist) {
			return nil, fmt.Errorf("%w: %s holds data files but no MANIFEST naming them: %s", ErrCorrupt, dir, first)
		}
		if pebble.IsCorruptionError(err) || strings.Contains(first, "corrupt") || strings.Contains(first, "checksum") {
			return nil, fmt.Errorf("%w: %s: %s", ErrCorrupt, dir, first)
		}
		return nil, fmt.Errorf("raftlog: open %s: %s", dir, first)
	}
	return db, nil
}

// hasData reports whether dir holds Pebble tables or a non-empty WAL.
func hasData(dir string) bool {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false
	}
	for _, e := range entries {
		name := e.Name()
		if strings.HasSuffix(name, ".sst") {
			return true
		}
		if strings.HasSuffix(name, ".log") {
			if info, err := e.Info(); err == nil && info.Size() > 0 {
				return true
			}
		}
	}
	return false
}
