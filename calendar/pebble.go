package calendar

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/cockroachdb/pebble/v2"
	"github.com/cockroachdb/pebble/v2/bloom"
	"github.com/cockroachdb/pebble/v2/sstable"
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

// openPebble opens the database, turning Pebble's errors about damaged
// files into one line that names the file and what to do.
//
// A damaged block Pebble finds later, while reading (Pebble's default is
// to stop the process with a long internal dump, from whatever goroutine
// found it), is reported to onCorrupt in one line instead.
func openPebble(dir string, opts StoreOptions, onCorrupt func(error)) (db *pebble.DB, err error) {
	defer func() {
		// Pebble reports some damage found while opening through Fatalf.
		if r := recover(); r != nil {
			f, ok := r.(pebbleFatal)
			if !ok {
				panic(r)
			}
			db, err = nil, describeOpenError(dir, fmt.Errorf("%w: %s", ErrCorrupt, f.msg))
		}
	}()
	cache := pebble.NewCache(opts.CacheBytes)
	defer cache.Unref()
	po := &pebble.Options{Cache: cache, Logger: pebbleLogger{opts.Logger}, ReadOnly: opts.ReadOnly, FS: opts.FS,
		EventListener: &pebble.EventListener{DataCorruption: func(info pebble.DataCorruptionInfo) {
			onCorrupt(fmt.Errorf("%w: %s is damaged (%s); stop the server, restore the data directory from a backup, then run 'tempel calendar check'",
				ErrCorrupt, info.Path, firstLine(info.Details)))
		}}}
	po.Levels[0].BlockSize = opts.BlockSize // later levels inherit it
	for i := range po.Levels {
		// Bloom filters let a Get skip the tables that cannot hold its
		// key; every chain is a dozen point reads.
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		// Hashes do not compress; compressing only costs CPU both ways.
		po.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	db, err = pebble.Open(dir, po)
	if err != nil {
		return nil, describeOpenError(dir, err)
	}
	return db, nil
}

// damagedFile finds the name of a store file in an error message.
var damagedFile = regexp.MustCompile(`(MANIFEST-\d+|OPTIONS-\d+|CURRENT|\d{6}\.(?:sst|log|blob))`)

// damagedTable finds a table named by its number alone ("file 000006").
var damagedTable = regexp.MustCompile(`\bfile (\d{6})\b`)

// lockErr matches Pebble's refusal to open a directory another process
// has locked (a word "lock", not "block").
var lockErr = regexp.MustCompile(`(?i)\block\b|\bLOCK\b|resource temporarily unavailable`)

// describeOpenError turns an error from opening or loading the store into
// one line: which file, what is wrong, and what the operator can do.
// Errors that are not about damage (a lock held by a running server,
// permissions) keep their first line.
func describeOpenError(dir string, err error) error {
	if err == nil {
		return nil
	}
	first, _, _ := strings.Cut(err.Error(), "\n")
	switch {
	case lockErr.MatchString(first):
		return fmt.Errorf("calendar: store %s is in use by another process (is a server running?): %s", dir, first)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("calendar: store %s: %s", dir, first)
	}
	damaged := errors.Is(err, ErrCorrupt) || pebble.IsCorruptionError(err) || errors.Is(err, os.ErrNotExist) ||
		strings.Contains(first, "corrupt") || strings.Contains(first, "checksum")
	if !damaged {
		return fmt.Errorf("calendar: open store %s: %s", dir, first)
	}
	where := "a file of the store"
	if m := damagedFile.FindString(err.Error()); m != "" {
		where = filepath.Join(dir, m)
	} else if m := damagedTable.FindStringSubmatch(err.Error()); m != nil {
		where = filepath.Join(dir, m[1]+".sst")
	}
	return fmt.Errorf("%w: %s is damaged or missing (%s); stop the server, restore the data directory from a backup, "+
		"then run 'tempel calendar check' (and 'tempel calendar accept-loss' if seconds are missing)",
		ErrCorrupt, where, strings.TrimPrefix(first, "calendar: store corrupt: "))
}

// firstLine is an error's first line: Pebble's errors carry stack traces.
func firstLine(err error) string {
	if err == nil {
		return ""
	}
	l, _, _ := strings.Cut(err.Error(), "\n")
	return l
}
