package calendar

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/ksi"
)

func openMark(t *testing.T, path string, create bool) (*Watermark, bool) {
	t.Helper()
	w, found, err := OpenWatermark(path, create)
	if err != nil {
		t.Fatal(err)
	}
	if w != nil {
		t.Cleanup(func() { w.Close() })
	}
	return w, found
}

func sameMark(a, b Mark) bool { return a.Last == b.Last && a.Pub == b.Pub && a.Root.Equal(b.Root) }

// TestWatermarkCreate: a missing or empty file is "not found"; only with
// create is a zero mark written, and it is found on the next open.
func TestWatermarkCreate(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watermark")
	if w, found := openMark(t, path, false); w != nil || found {
		t.Fatalf("missing file opened: %v %v", w, found)
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("open without create made the file: %v", err)
	}
	if err := os.WriteFile(path, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if w, found := openMark(t, path, false); w != nil || found {
		t.Fatalf("empty file opened: %v %v", w, found)
	}
	w, found := openMark(t, path, true)
	if found || !sameMark(w.Mark(), Mark{}) {
		t.Fatalf("created: found %v, mark %+v", found, w.Mark())
	}
	w.Close()
	w, found = openMark(t, path, false)
	if !found || !sameMark(w.Mark(), Mark{}) {
		t.Fatalf("reopened: found %v, mark %+v", found, w.Mark())
	}
}

// TestWatermarkMonotonic: Answered and Published never move the mark
// back, and a reopen finds the newest mark however many writes
// alternated between the sectors.
func TestWatermarkMonotonic(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watermark")
	w, _ := openMark(t, path, true)
	for i := uint64(1); i <= 7; i++ {
		if err := w.Answered(100+i, leafFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Published(104); err != nil {
		t.Fatal(err)
	}
	want := Mark{Last: 107, Root: leafFor(7), Pub: 104}
	if err := w.Answered(105, leafFor(5)); err != nil {
		t.Fatal(err)
	}
	if err := w.Answered(107, leafFor(99)); err != nil {
		t.Fatal(err)
	}
	if err := w.Published(100); err != nil {
		t.Fatal(err)
	}
	if !sameMark(w.Mark(), want) {
		t.Fatalf("mark %+v after older writes, want %+v", w.Mark(), want)
	}
	w.Close()
	w, found := openMark(t, path, false)
	if !found || !sameMark(w.Mark(), want) {
		t.Fatalf("reopened: %v %+v, want %+v", found, w.Mark(), want)
	}
	// Writes after a reopen go on from the newest copy.
	if err := w.Answered(108, leafFor(8)); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w, _ = openMark(t, path, false)
	if want.Last, want.Root = 108, leafFor(8); !sameMark(w.Mark(), want) {
		t.Fatalf("after a write and a reopen: %+v, want %+v", w.Mark(), want)
	}
	if err := w.Answered(109, make(ksi.Imprint, 66)); err == nil {
		t.Fatal("a root longer than the record holds was written")
	}
}

// damageSector overwrites part of one sector of the watermark file.
func damageSector(t *testing.T, path string, slot int, at int, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, int64(slot*watermarkSector+at)); err != nil {
		t.Fatal(err)
	}
}

// newestSlot is the sector that holds the newest copy.
func newestSlot(t *testing.T, path string) int {
	t.Helper()
	w, _ := openMark(t, path, false)
	defer w.Close()
	return w.slot
}

// TestWatermarkTornSector: a torn or garbled copy is passed over for the
// other one, which is the mark before the interrupted write (nothing of
// the interrupted write was answered: the write had not returned).
func TestWatermarkTornSector(t *testing.T) {
	for _, tc := range []struct {
		name string
		at   int
		b    []byte
	}{
		{"garbage", 0, bytes.Repeat([]byte{0xA5}, watermarkSector)},
		{"one byte flipped in the mark", 25, []byte{0xFF}},
		{"torn: the tail of the record zero", 40, make([]byte, watermarkRecord-40)},
		{"checksum flipped", watermarkRecord - 2, []byte{0x00, 0x01}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "watermark")
			w, _ := openMark(t, path, true)
			older := Mark{Last: 200, Root: leafFor(200), Pub: 190}
			if err := w.Answered(older.Last, older.Root); err != nil {
				t.Fatal(err)
			}
			if err := w.Published(older.Pub); err != nil {
				t.Fatal(err)
			}
			if err := w.Answered(201, leafFor(201)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			slot := newestSlot(t, path)
			damageSector(t, path, slot, tc.at, tc.b)
			w, found := openMark(t, path, false)
			if !found || !sameMark(w.Mark(), older) {
				t.Fatalf("newest copy damaged: found %v, mark %+v, want the one before %+v", found, w.Mark(), older)
			}
			// The next write goes over the damaged sector, not the good one.
			if err := w.Answered(202, leafFor(202)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			if got := newestSlot(t, path); got != slot {
				t.Fatalf("rewrote sector %d, want the damaged %d", got, slot)
			}
			damageSector(t, path, 1-slot, 0, []byte("garbage!"))
			w, _ = openMark(t, path, false)
			if w.Mark().Last != 202 {
				t.Fatalf("mark %d after the older sector was damaged, want 202", w.Mark().Last)
			}
		})
	}
}

// TestWatermarkBothSectorsDamaged: with neither copy intact the file is
// refused, with or without create, and left as it was.
func TestWatermarkBothSectorsDamaged(t *testing.T) {
	cases := map[string]func(t *testing.T, path string){
		"both garbled": func(t *testing.T, path string) {
			damageSector(t, path, 0, 30, []byte{1, 2, 3})
			damageSector(t, path, 1, 30, []byte{1, 2, 3})
		},
		"short garbage file": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("not a watermark"), 0o600); err != nil {
				t.Fatal(err)
			}
		},
		"zeros": func(t *testing.T, path string) {
			if err := os.WriteFile(path, make([]byte, 2*watermarkSector), 0o600); err != nil {
				t.Fatal(err)
			}
		},
	}
	for name, damage := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "watermark")
			w, _ := openMark(t, path, true)
			if err := w.Answered(300, leafFor(300)); err != nil {
				t.Fatal(err)
			}
			w.Close()
			damage(t, path)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			for _, create := range []bool{false, true} {
				w, found, err := OpenWatermark(path, create)
				if !errors.Is(err, ErrWatermarkDamaged) || w != nil || found {
					t.Fatalf("create=%v: %v %v %v, want ErrWatermarkDamaged", create, w, found, err)
				}
			}
			if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
				t.Fatal("a refused watermark was changed")
			}
		})
	}
}

// TestWatermarkReset: AcceptLoss may move the mark back; the lower mark
// is what a reopen finds.
func TestWatermarkReset(t *testing.T) {
	path := filepath.Join(t.TempDir(), "watermark")
	w, _ := openMark(t, path, true)
	for i := uint64(1); i <= 3; i++ {
		if err := w.Answered(400+i, leafFor(i)); err != nil {
			t.Fatal(err)
		}
	}
	low := Mark{Last: 350, Root: leafFor(350)}
	if err := w.reset(low); err != nil {
		t.Fatal(err)
	}
	w.Close()
	w, _ = openMark(t, path, false)
	if !sameMark(w.Mark(), low) {
		t.Fatalf("after reset: %+v, want %+v", w.Mark(), low)
	}
}

// envWatermarkChild makes the test binary create a watermark under a
// file size limit smaller than one record, as a crash or a full disk
// would cut the first write short (TestWatermarkFirstWriteCut).
const envWatermarkChild = "TEMPEL_WATERMARK_CREATE_CHILD"

func watermarkCreateChild(path string) {
	lim := syscall.Rlimit{Cur: 40, Max: 40}
	if err := syscall.Setrlimit(syscall.RLIMIT_FSIZE, &lim); err != nil {
		fmt.Println("setrlimit:", err)
		os.Exit(2)
	}
	if _, _, err := OpenWatermark(path, true); err != nil {
		fmt.Println("create failed:", err)
		os.Exit(1)
	}
	os.Exit(0)
}

// TestWatermarkFirstWriteCut: a new calendar's watermark whose first
// write is cut short (here by a file size limit, in a real process) must
// not be left as a damaged file: a new calendar would then be refused
// for good. The next open creates it whole.
func TestWatermarkFirstWriteCut(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "watermark")
	cmd := exec.Command(exe, "-test.run=^$")
	cmd.Env = append(os.Environ(), envWatermarkChild+"="+path)
	out, err := cmd.CombinedOutput()
	if code := cmd.ProcessState.ExitCode(); code != 1 || !strings.Contains(string(out), "create failed") {
		t.Fatalf("child: exit %d (%v): %s; want a failed creation", code, err, out)
	}
	w, found := openMark(t, path, true)
	if found || !sameMark(w.Mark(), Mark{}) {
		t.Fatalf("after a cut first write: found %v, mark %+v", found, w.Mark())
	}
}

// TestWatermarkReadersDoNotWaitForWrites: Mark is read on every extension
// and head request; a write holds the lock through its fsync, which on a
// slow disk takes long, and readers must not queue behind it.
func TestWatermarkReadersDoNotWaitForWrites(t *testing.T) {
	w, _ := openMark(t, filepath.Join(t.TempDir(), "watermark"), true)
	if err := w.Answered(500, leafFor(500)); err != nil {
		t.Fatal(err)
	}
	w.mu.Lock() // a write in progress, waiting for its fsync
	defer w.mu.Unlock()
	got := make(chan Mark, 1)
	go func() { got <- w.Mark() }()
	select {
	case m := <-got:
		if m.Last != 500 {
			t.Fatalf("mark %d, want 500", m.Last)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Mark waited for a write in progress")
	}
}
