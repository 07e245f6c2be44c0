package calendar

import (
	"context"
	"errors"
	"log/slog"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/cockroachdb/pebble/v2/vfs"
)

// fullFS is the real file system with a switch that makes the disk look
// full: writes fail with ENOSPC, or only the reported free space drops.
type fullFS struct {
	vfs.FS
	noSpace  atomic.Bool // writes fail
	lowSpace atomic.Bool // GetDiskUsage reports almost nothing free
}

func (f *fullFS) wrap(file vfs.File, err error) (vfs.File, error) {
	if err != nil {
		return nil, err
	}
	return &fullFile{File: file, fs: f}, nil
}

func (f *fullFS) Create(name string, c vfs.DiskWriteCategory) (vfs.File, error) {
	if f.noSpace.Load() {
		return nil, syscall.ENOSPC
	}
	return f.wrap(f.FS.Create(name, c))
}

func (f *fullFS) ReuseForWrite(o, n string, c vfs.DiskWriteCategory) (vfs.File, error) {
	return f.wrap(f.FS.ReuseForWrite(o, n, c))
}

func (f *fullFS) OpenReadWrite(name string, c vfs.DiskWriteCategory, opts ...vfs.OpenOption) (vfs.File, error) {
	return f.wrap(f.FS.OpenReadWrite(name, c, opts...))
}

func (f *fullFS) GetDiskUsage(path string) (vfs.DiskUsage, error) {
	du, err := f.FS.GetDiskUsage(path)
	if f.lowSpace.Load() {
		du.AvailBytes = 4096
	}
	return du, err
}

type fullFile struct {
	vfs.File
	fs *fullFS
}

func (f *fullFile) Write(p []byte) (int, error) {
	if f.fs.noSpace.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.Write(p)
}

func (f *fullFile) WriteAt(p []byte, off int64) (int, error) {
	if f.fs.noSpace.Load() {
		return 0, syscall.ENOSPC
	}
	return f.File.WriteAt(p, off)
}

func (f *fullFile) Sync() error {
	if f.fs.noSpace.Load() {
		return syscall.ENOSPC
	}
	return f.File.Sync()
}

func (f *fullFile) SyncData() error { return f.Sync() }

// TestDiskFull fills the disk under a running calendar (the free-space
// reserve reached, or writes failing inside Pebble), checks that nothing
// is answered meanwhile and readiness says why, then frees the space and
// checks that the calendar resumes by itself, without a restart: the
// seconds missed are empty leaves, the last good second is unchanged.
func TestDiskFull(t *testing.T) {
	for _, mode := range []string{"reserve reached", "write fails"} {
		t.Run(mode, func(t *testing.T) {
			fs := &fullFS{FS: vfs.Default}
			dir := t.TempDir()
			st, err := OpenStore(dir, StoreOptions{FS: fs, Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			defer func() {
				defer func() { recover() }() // a horked Pebble may complain on close
				st.Close()
			}()
			wm, _, err := OpenWatermark(filepath.Join(t.TempDir(), "watermark"), true)
			if err != nil {
				t.Fatal(err)
			}
			defer wm.Close()
			clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
			svc, _ := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Watermark: wm, Now: clock.Now, Logger: discardLogger()})
			clock.Set(time.Unix(1_800_000_003, 100e6))
			if err := svc.closeDue(); err != nil {
				t.Fatal(err)
			}
			_, lastGood, _ := st.Head()
			rootGood := mustRoot(t, st, lastGood)

			if mode == "reserve reached" {
				fs.lowSpace.Store(true)
			} else {
				fs.noSpace.Store(true)
			}
			res := submitMany(svc, 2, 50)
			waitPending(t, svc, 2)
			clock.Set(time.Unix(1_800_000_004, 100e6))
			err, fatal := svc.pass()
			want := ErrFailed
			if mode == "reserve reached" {
				want = ErrDiskFull
			}
			if !errors.Is(err, want) || fatal != nil {
				t.Fatalf("append on a full disk: %v (fatal %v), want %v", err, fatal, want)
			}
			// Nothing is answered with a signature; readiness says why.
			for i := 0; i < 2; i++ {
				if r := <-res; r.err == nil || r.sig != nil {
					t.Fatalf("answered %v / %d bytes on a full disk", r.err, len(r.sig))
				}
			}
			if err := svc.Ready(); err == nil {
				t.Fatal("ready on a full disk")
			}
			// The clock behind as well: readiness names both, in one line.
			clock.Set(time.Unix(1_800_000_000, 0))
			if err := svc.Ready(); err == nil || !strings.Contains(err.Error(), "waiting for the clock") ||
				!strings.Contains(err.Error(), want.Error()) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("ready on a full disk with the clock behind: %v, want both said in one line", err)
			}
			clock.Set(time.Unix(1_800_000_004, 100e6))
			if _, err := svc.Sign(context.Background(), leafFor(1), 0, "x"); !errors.Is(err, ErrNotReady) {
				t.Fatalf("submission on a full disk: %v, want ErrNotReady", err)
			}
			if wm.Mark().Last != lastGood {
				t.Fatalf("watermark moved to %d on a full disk, last good %d", wm.Mark().Last, lastGood)
			}
			// Still full a second later: still refused, same fault.
			clock.Set(time.Unix(1_800_000_005, 100e6))
			if err, _ := svc.pass(); !errors.Is(err, want) {
				t.Fatalf("second attempt on a full disk: %v", err)
			}

			// Space comes back. Below the reserve nothing was written, so
			// the next pass resumes without a restart; a write that failed
			// inside Pebble leaves its state unknown until it is reopened.
			fs.noSpace.Store(false)
			fs.lowSpace.Store(false)
			clock.Set(time.Unix(1_800_000_006, 100e6))
			if mode == "write fails" {
				if err, _ := svc.pass(); !errors.Is(err, ErrFailed) || !strings.Contains(err.Error(), "restart the server") {
					t.Fatalf("after a failed write: %v, want a request to restart", err)
				}
				func() {
					defer func() { recover() }() // a horked Pebble may complain on close
					st.Close()
				}()
				if st, err = OpenStore(dir, StoreOptions{Logger: discardLogger()}); err != nil {
					t.Fatalf("reopen: %v", err)
				}
				if err := st.CheckMark(wm.Mark(), true); err != nil {
					t.Fatalf("after restart: %v", err)
				}
				svc, _ = NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Watermark: wm, Now: clock.Now, Logger: discardLogger()})
			}
			if err, fatal := svc.pass(); err != nil || fatal != nil {
				t.Fatalf("after space was freed: %v %v", err, fatal)
			}
			if err := svc.Ready(); err != nil {
				t.Fatalf("not ready after space was freed: %v", err)
			}
			res = submitMany(svc, 3, 90)
			waitPending(t, svc, 3)
			closeAt(t, svc, clock, time.Unix(1_800_000_007, 100e6))
			for i := 0; i < 3; i++ {
				if r := <-res; r.err != nil {
					t.Fatalf("after recovery: %v", r.err)
				}
			}
			if err := st.Check(); err != nil {
				t.Fatal(err)
			}
			_, last, _ := st.Head()
			if last != 1_800_000_006 {
				t.Fatalf("last second %d after recovery, want 1800000006", last)
			}
			if r := mustRoot(t, st, lastGood); !r.Equal(rootGood) {
				t.Fatal("root of the last good second changed")
			}
			for sec := lastGood + 1; sec < last; sec++ {
				if l, err := st.Leaf(sec); err != nil || !l.Equal(EmptyLeaf) {
					t.Fatalf("second %d missed while full: leaf %v %v, want empty", sec, l, err)
				}
			}
			if m := wm.Mark(); m.Last != last || !m.Root.Equal(mustRoot(t, st, last)) {
				t.Fatalf("watermark %d after recovery, want %d", m.Last, last)
			}
		})
	}
}

// TestDiskFullLogsOnce: a full disk that lasts logs when the calendar
// stops and when it answers again, not once per retry.
func TestDiskFullLogsOnce(t *testing.T) {
	fs := &fullFS{FS: vfs.Default}
	st, err := OpenStore(t.TempDir(), StoreOptions{FS: fs, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	logs := &countingHandler{}
	clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
	svc, _ := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: slog.New(logs)})
	clock.Set(time.Unix(1_800_000_002, 100e6))
	if err, _ := svc.pass(); err != nil {
		t.Fatal(err)
	}
	fs.lowSpace.Store(true)
	for i := int64(0); i < 20; i++ {
		clock.Set(time.Unix(1_800_000_003+i, 100e6))
		if err, _ := svc.pass(); !errors.Is(err, ErrDiskFull) {
			t.Fatalf("pass %d: %v", i, err)
		}
	}
	if got := logs.messages(); len(got) != 1 {
		t.Fatalf("%d log lines during 20 s of a full disk, want 1: %q", len(got), got)
	}
	fs.lowSpace.Store(false)
	clock.Set(time.Unix(1_800_000_030, 100e6))
	if err, _ := svc.pass(); err != nil {
		t.Fatal(err)
	}
	if got := logs.messages(); len(got) > 3 {
		t.Fatalf("%d log lines after recovery, want at most 3: %q", len(got), got)
	}
}
