package calendar

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"

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

// corruptionLog reports a damaged file found by a read once per file.
// Pebble's default would call Fatalf, which panics: a damaged table then
// took the whole process down (or, at open, printed a stack dump) where
// the read can simply fail, with nothing answered from the bad block.
type corruptionLog struct {
	log  *slog.Logger
	mu   sync.Mutex
	seen map[string]bool
}

func newCorruptionLog(log *slog.Logger) *corruptionLog {
	return &corruptionLog{log: log, seen: make(map[string]bool)}
}

func (c *corruptionLog) report(info pebble.DataCorruptionInfo) {
	c.mu.Lock()
	first := !c.seen[info.Path]
	c.seen[info.Path] = true
	c.mu.Unlock()
	if first {
		c.log.Error("calendar store file damaged; reads of it fail: stop the server, restore the data directory from a backup, then run 'tempel calendar check'",
			"file", info.Path, "err", fmt.Sprint(info.Details))
	}
}

// openPebble opens the database, turning Pebble's errors about damaged
// files into one line that names the file and what to do.
func openPebble(dir string, opts StoreOptions) (db *pebble.DB, err error) {
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
		EventListener: &pebble.EventListener{DataCorruption: newCorruptionLog(opts.Logger).report}}
	po.Levels[0].BlockSize = opts.BlockSize // later levels inherit it
	for i := range po.Levels {
		// Bloom filters let a Get skip the tables that cannot hold its
		// key; every chain is a dozen point reads.
		po.Levels[i].FilterPolicy = bloom.FilterPolicy(10)
		// Hashes do not compress; compressing only costs CPU both ways.
		po.Levels[i].Compression = func() *sstable.CompressionProfile { return sstable.NoCompression }
	}
	if data, _ := storeFiles(dir); data && !opts.ReadOnly {
		// Tables or a WAL without the MANIFEST naming them are a
		// damaged store, not a new one: Pebble would start an empty
		// store there and delete the old files as obsolete.
		po.ErrorIfNotExists = true
	}
	db, err = pebble.Open(dir, po)
	if err != nil {
		return nil, describeOpenError(dir, err)
	}
	return db, nil
}

// storeFiles reports what a store directory holds: data (tables, or a
// WAL with records) and the marker naming its MANIFEST.
func storeFiles(dir string) (data, marker bool) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return false, false
	}
	for _, e := range entries {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, "marker.manifest."):
			marker = true
		case strings.HasSuffix(name, ".sst"), strings.HasSuffix(name, ".blob"):
			data = true
		case strings.HasSuffix(name, ".log"):
			if info, err := e.Info(); err == nil && info.Size() > 0 {
				data = true
			}
		}
	}
	return data, marker
}

// StoreExists reports whether dir holds a calendar store: a missing or
// empty directory (or one left by a creation cut short) is a calendar
// not yet begun.
func StoreExists(dir string) bool {
	data, marker := storeFiles(dir)
	return data || marker
}

// damagedFile finds the name of a store file in an error message.
var damagedFile = regexp.MustCompile(`(MANIFEST-\d+|OPTIONS-\d+|CURRENT|\d{6}\.(?:sst|log|blob))`)

// lockConflict reports Pebble's refusal to lock a store another process
// (or this one) has open: the bare errno of the refused lock, without a
// path (a LOCK file that cannot be created is a permission problem).
func lockConflict(err error) bool {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return false
	}
	return errors.Is(err, syscall.EAGAIN) || errors.Is(err, syscall.EACCES) ||
		strings.Contains(err.Error(), "lock held by current process")
}

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
	case lockConflict(err):
		return fmt.Errorf("calendar: store %s is in use by another process (is a server running?): %s", dir, first)
	case errors.Is(err, os.ErrPermission):
		return fmt.Errorf("calendar: store %s: %s", dir, first)
	}
	// A store without its MANIFEST reads as "does not exist": only a
	// directory holding a store is opened that way (StoreExists).
	damaged := errors.Is(err, ErrCorrupt) || pebble.IsCorruptionError(err) || errors.Is(err, os.ErrNotExist) ||
		errors.Is(err, pebble.ErrDBDoesNotExist) || strings.Contains(first, "corrupt") || strings.Contains(first, "checksum")
	if !damaged {
		return fmt.Errorf("calendar: open store %s: %s", dir, first)
	}
	where := "a file of the store"
	if info := pebble.ExtractDataCorruptionInfo(err); info != nil && info.Path != "" {
		where = info.Path
	} else if errors.Is(err, pebble.ErrDBDoesNotExist) {
		where = filepath.Join(dir, "MANIFEST")
	} else if m := damagedFile.FindString(err.Error()); m != "" {
		where = filepath.Join(dir, m)
	}
	return fmt.Errorf("%w: %s is damaged or missing (%s); stop the server, restore the data directory from a backup, "+
		"then run 'tempel calendar check' (and 'tempel calendar accept-loss' if seconds are missing)",
		ErrCorrupt, where, strings.TrimPrefix(first, "calendar: store corrupt: "))
}
