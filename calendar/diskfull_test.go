package calendar

import (
	"context"
	"errors"
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

func TestDiskFull(t *testing.T) {
	for _, mode := range []string{"reserve reached", "write fails"} {
		t.Run(mode, func(t *testing.T) {
			fs := &fullFS{FS: vfs.Default}
			dir := t.TempDir()
			st, err := OpenStore(dir, StoreOptions{FS: fs, Logger: discardLogger()})
			if err != nil {
				t.Fatal(err)
			}
			clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
			svc, _ := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Now: clock.Now, Logger: discardLogger()})
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
			err = svc.closeDue()
			if !errors.Is(err, ErrFailed) {
				t.Fatalf("append on a full disk: %v, want ErrFailed", err)
			}
			// Nothing is answered with a signature; readiness says why.
			for i := 0; i < 2; i++ {
				if r := <-res; r.err == nil || r.sig != nil {
					t.Fatalf("answered %v / %d bytes on a full disk", r.err, len(r.sig))
				}
			}
			if st.Failed() == nil {
				t.Fatal("store not marked failed")
			}
			if _, err := st.Append(lastGood+1, EmptyLeaf); !errors.Is(err, ErrFailed) {
				t.Fatalf("append after failure: %v", err)
			}
			if _, err := st.Chain(lastGood, lastGood); !errors.Is(err, ErrFailed) {
				t.Fatalf("chain after failure: %v", err)
			}
			if err := svc.Ready(); err == nil {
				t.Fatal("ready on a full disk")
			}
			if _, err := svc.Sign(context.Background(), leafFor(1), 0, "x"); !errors.Is(err, ErrNotReady) {
				t.Fatalf("submission on a full disk: %v, want ErrNotReady", err)
			}
			// Space comes back; after a restart the calendar is intact
			// up to the last good second.
			fs.noSpace.Store(false)
			fs.lowSpace.Store(false)
			func() {
				defer func() { recover() }() // a horked Pebble may complain on close
				st.Close()
			}()
			st2, err := OpenStore(dir, StoreOptions{Logger: discardLogger()})
			if err != nil {
				t.Fatalf("reopen: %v", err)
			}
			defer st2.Close()
			if err := st2.Check(); err != nil {
				t.Fatal(err)
			}
			_, last, _ := st2.Head()
			if last < lastGood {
				t.Fatalf("lost seconds: last %d, was %d", last, lastGood)
			}
			if r := mustRoot(t, st2, lastGood); !r.Equal(rootGood) {
				t.Fatal("root of the last good second changed")
			}
		})
	}
}
