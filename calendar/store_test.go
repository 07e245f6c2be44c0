package calendar

import (
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"math/bits"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tempel-ksi/tempel/ksi"
)

func leafFor(t uint64) ksi.Imprint {
	s := sha256.Sum256(binary.BigEndian.AppendUint64(nil, t))
	return append(ksi.Imprint{1}, s[:]...)
}

// refRoot computes the calendar root over leaves by the recursive rule of
// docs/design/formats.md#calendar-hash-chains (largest perfect subtree on the left), independently of
// the store's peak bookkeeping.
func refRoot(leaves []ksi.Imprint) ksi.Imprint {
	if len(leaves) == 1 {
		return leaves[0]
	}
	k := 1 << (bits.Len(uint(len(leaves)-1)) - 1)
	return hashNode(refRoot(leaves[:k]), refRoot(leaves[k:]))
}

func openTest(t testing.TB, dir string) *Store {
	t.Helper()
	s, err := OpenStore(dir, StoreOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestStoreChainsAndRoots(t *testing.T) {
	const first, last = 1000, 1100
	dir := t.TempDir()
	s := openTest(t, dir)
	all := make([]ksi.Imprint, last+1)
	for i := range all {
		all[i] = EmptyLeaf
	}
	for sec := uint64(first); sec <= last; sec++ {
		all[sec] = leafFor(sec)
		if sec%7 == 0 {
			all[sec] = EmptyLeaf // seconds without input
		}
		root, err := s.Append(sec, all[sec])
		if err != nil {
			t.Fatal(err)
		}
		if want := refRoot(all[:sec+1]); !root.Equal(want) {
			t.Fatalf("root after %d: %s, want %s", sec, root, want)
		}
	}
	check := func(s *Store) {
		var h ksi.Hasher
		r := rand.New(rand.NewPCG(1, 1))
		for i := 0; i < 400; i++ {
			tt := first + r.Uint64N(last-first+1)
			p := tt + r.Uint64N(last-tt+1)
			ch, err := s.Chain(tt, p)
			if err != nil {
				t.Fatalf("chain %d→%d: %v", tt, p, err)
			}
			out, err := ch.Output(&h)
			if err != nil {
				t.Fatal(err)
			}
			if want := refRoot(all[:p+1]); !out.Equal(want) {
				t.Fatalf("chain %d→%d gives %s, root is %s", tt, p, out, want)
			}
			got, err := ch.AggregationTimeFromShape()
			if err != nil || got != tt {
				t.Fatalf("chain %d→%d shape gives time %d (%v)", tt, p, got, err)
			}
			if !ch.InputHash.Equal(all[tt]) {
				t.Fatalf("chain %d input %s, leaf %s", tt, ch.InputHash, all[tt])
			}
		}
	}
	check(s)
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir)
	defer s.Close()
	check(s)
	if f, l, ok := s.Head(); !ok || f != first || l != last {
		t.Fatalf("head after reopen: %d %d %v", f, l, ok)
	}
	// Appending continues where it stopped.
	all = append(all, leafFor(last+1))
	root, err := s.Append(last+1, all[last+1])
	if err != nil || !root.Equal(refRoot(all)) {
		t.Fatalf("append after reopen: %v, root %s want %s", err, root, refRoot(all))
	}
}

func TestStoreRejects(t *testing.T) {
	s := openTest(t, t.TempDir())
	defer s.Close()
	if _, err := s.Chain(5, 5); !errors.Is(err, ErrEmpty) {
		t.Errorf("chain on empty store: %v", err)
	}
	if _, err := s.Append(100, leafFor(100)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		t    uint64
		want error
	}{{100, ErrOutOfOrder}, {99, ErrOutOfOrder}, {102, ErrOutOfOrder}} {
		if _, err := s.Append(tc.t, leafFor(tc.t)); !errors.Is(err, tc.want) {
			t.Errorf("append %d: %v, want %v", tc.t, err, tc.want)
		}
	}
	if _, err := s.Append(101, ksi.Imprint{1, 2, 3}); err == nil {
		t.Error("malformed leaf appended")
	}
	if _, err := s.Chain(99, 100); !errors.Is(err, ErrTimeTooOld) {
		t.Errorf("chain before first: %v", err)
	}
	if _, err := s.Chain(100, 101); !errors.Is(err, ErrTimeTooNew) {
		t.Errorf("chain past last: %v", err)
	}
	if _, err := s.Chain(100, 99); !errors.Is(err, ErrBadRange) {
		t.Errorf("chain backwards: %v", err)
	}
}

// TestStoreDetectsCorruption damages the stored calendar in ways Pebble's
// checksums cannot see and expects Open to refuse it.
func TestStoreDetectsCorruption(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(db *pebble.DB) error
	}{
		{"root changed", func(db *pebble.DB) error { return db.Set(metaRoot, leafFor(1), pebble.Sync) }},
		{"peak changed", func(db *pebble.DB) error {
			var k [10]byte
			return db.Set(nodeKey(&k, nodeID{0, 1020}), leafFor(3), pebble.Sync)
		}},
		{"peak missing", func(db *pebble.DB) error {
			var k [10]byte
			return db.Delete(nodeKey(&k, nodeID{0, 1020}), pebble.Sync)
		}},
		{"last missing", func(db *pebble.DB) error { return db.Delete(metaLast, pebble.Sync) }},
		{"version", func(db *pebble.DB) error { return db.Set(metaVersion, u64(99), pebble.Sync) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTest(t, dir)
			leaves := make([]ksi.Imprint, 21)
			for i := range leaves {
				leaves[i] = leafFor(uint64(1000 + i))
			}
			if _, err := s.AppendRange(1000, leaves, true); err != nil {
				t.Fatal(err)
			}
			s.Close()
			db, err := pebble.Open(dir, &pebble.Options{Logger: pebbleLogger{discardLogger()}})
			if err != nil {
				t.Fatal(err)
			}
			if err := tc.damage(db); err != nil {
				t.Fatal(err)
			}
			db.Close()
			if s, err := OpenStore(dir, StoreOptions{Logger: discardLogger()}); !errors.Is(err, ErrCorrupt) {
				if s != nil {
					s.Close()
				}
				t.Fatalf("open of damaged store: %v, want ErrCorrupt", err)
			}
		})
	}
}
