package raftlog

import (
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2"
	pb "go.etcd.io/raft/v3/raftpb"
)

// writeLog makes a log of entries 1..n in term 1, committed to n.
func writeLog(t *testing.T, dir string, n uint64) {
	t.Helper()
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var ents []*pb.Entry
	for i := uint64(1); i <= n; i++ {
		ents = append(ents, entry(i, 1, []byte("payload of an entry")))
	}
	if err := s.Save(&pb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(n)}, ents, nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// rawEdit opens the log's database directly and applies edit, as damage
// from outside would.
func rawEdit(t *testing.T, dir string, edit func(db *pebble.DB)) {
	t.Helper()
	db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{slog.New(slog.DiscardHandler)}})
	if err != nil {
		t.Fatal(err)
	}
	edit(db)
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}
}

func rawGet(t *testing.T, db *pebble.DB, key []byte) []byte {
	t.Helper()
	v, c, err := db.Get(key)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return append([]byte(nil), v...)
}

// TestOpenRefusesDamage damages a log in the ways a disk or an operator
// can and checks Open refuses each with ErrCorrupt and a message saying
// what is wrong.
func TestOpenRefusesDamage(t *testing.T) {
	cases := []struct {
		name string
		edit func(t *testing.T, db *pebble.DB)
		want string
	}{
		{"flipped bit in an entry", func(t *testing.T, db *pebble.DB) {
			v := rawGet(t, db, entryKey(5))
			v[len(v)-3] ^= 0x10
			db.Set(entryKey(5), v, pebble.Sync)
		}, "entry 5: checksum mismatch"},
		{"entry missing", func(t *testing.T, db *pebble.DB) {
			db.Delete(entryKey(5), pebble.Sync)
		}, "entries 5 to 5 are missing"},
		{"entry under another index", func(t *testing.T, db *pebble.DB) {
			db.Set(entryKey(5), rawGet(t, db, entryKey(6)), pebble.Sync)
		}, "entry stored at index 5 holds index 6"},
		{"tail lost", func(t *testing.T, db *pebble.DB) {
			db.DeleteRange(entryKey(8), entryKey(11), pebble.Sync)
		}, "commits index 10 but the log ends at 7"},
		{"term going back", func(t *testing.T, db *pebble.DB) {
			v, _ := encodeEntry(entry(3, 0, nil))
			db.Set(entryKey(3), v, pebble.Sync)
		}, "entry 3 has term 0, below the term 1"},
		{"truncated hard state", func(t *testing.T, db *pebble.DB) {
			db.Set([]byte{keyHard}, []byte{1, 2}, pebble.Sync)
		}, "hard state: value of 2 bytes"},
		{"first index record missing", func(t *testing.T, db *pebble.DB) {
			db.Delete([]byte{keyDummy}, pebble.Sync)
		}, "first index record missing"},
		{"another format", func(t *testing.T, db *pebble.DB) {
			db.Set([]byte{keyFormat}, []byte("tempel raftlog v0"), pebble.Sync)
		}, `format marker "tempel raftlog v0"`},
		{"not a raft log", func(t *testing.T, db *pebble.DB) {
			db.Delete([]byte{keyFormat}, pebble.Sync)
		}, "no format marker"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			writeLog(t, dir, 10)
			rawEdit(t, dir, func(db *pebble.DB) { c.edit(t, db) })
			s, err := Open(dir, Options{})
			if err == nil {
				s.Close()
				t.Fatal("damaged log opened")
			}
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("Open: %v; want ErrCorrupt naming %s and saying %q", err, dir, c.want)
			}
		})
	}
}

// TestOpenRefusesDamagedTable flips bytes inside a table file on disk:
// Pebble's block checksum catches it while Open reads the log.
func TestOpenRefusesDamagedTable(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 2000)
	rawEdit(t, dir, func(db *pebble.DB) {
		if err := db.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	tables, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no table after flush")
	}
	b, err := os.ReadFile(tables[0])
	if err != nil {
		t.Fatal(err)
	}
	for k := 200; k < 216; k++ {
		b[k] ^= 0xFF // inside the first data block
	}
	if err := os.WriteFile(tables[0], b, 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{})
	if err == nil {
		s.Close()
		t.Fatal("log with a damaged table opened")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v; want ErrCorrupt", err)
	}
	t.Log(err)
}

// TestOpenRefusesTablesWithoutManifest removes the MANIFEST: Pebble would
// otherwise start an empty database and delete the tables.
func TestOpenRefusesTablesWithoutManifest(t *testing.T) {
	dir := t.TempDir()
	writeLog(t, dir, 100)
	rawEdit(t, dir, func(db *pebble.DB) { db.Flush() })
	ms, _ := filepath.Glob(filepath.Join(dir, "MANIFEST-*"))
	for _, m := range ms {
		os.Remove(m)
	}
	s, err := Open(dir, Options{})
	if err == nil {
		s.Close()
		t.Fatal("log without MANIFEST opened")
	}
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Open: %v; want ErrCorrupt", err)
	}
	if tables, _ := filepath.Glob(filepath.Join(dir, "*.sst")); len(tables) == 0 {
		t.Fatal("the tables were deleted")
	}
}
