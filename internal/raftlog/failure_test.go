package raftlog

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"github.com/cockroachdb/pebble/v2/vfs/errorfs"
	pb "go.etcd.io/raft/v3/raftpb"
)

// TestFailedSyncRefusesWrites makes the WAL sync fail during a Save: the
// Save fails, every later write fails with the same error, and after
// reopening the log holds exactly what was acknowledged before.
func TestFailedSyncRefusesWrites(t *testing.T) {
	mem := vfs.NewCrashableMem()
	toggle := &errorfs.Toggle{Injector: errorfs.InjectorFunc(func(op errorfs.Op) error {
		if op.Kind == errorfs.OpFileSync || op.Kind == errorfs.OpFileSyncData || op.Kind == errorfs.OpFileWrite {
			return errorfs.ErrInjected
		}
		return nil
	})}
	s, err := Open("log", Options{FS: errorfs.Wrap(mem, toggle)})
	if err != nil {
		t.Fatal(err)
	}
	hs := func(c uint64) *pb.HardState {
		return &pb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(c)}
	}
	if err := s.Save(hs(2), []*pb.Entry{entry(1, 1, []byte("a")), entry(2, 1, []byte("b"))}, nil); err != nil {
		t.Fatal(err)
	}
	toggle.On()
	err = s.Save(hs(3), []*pb.Entry{entry(3, 1, []byte("c"))}, nil)
	if err == nil || !strings.HasPrefix(err.Error(), "raftlog: save:") {
		t.Fatalf("Save with a failing disk: %v", err)
	}
	toggle.Off()
	t.Log(err)
	if last, _ := s.LastIndex(); last != 2 {
		t.Fatalf("last index %d after a failed Save, want 2", last)
	}
	if err2 := s.Compact(1); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("Compact after a failed Save: %v, want %v", err2, err)
	}
	if err2 := s.Save(hs(3), []*pb.Entry{entry(3, 1, []byte("c"))}, nil); err2 == nil || err2.Error() != err.Error() {
		t.Fatalf("Save after a failed Save: %v, want %v", err2, err)
	}
	// Pebble's commit pipeline is gone; the process would restart. The
	// files as they were synced are what a restart sees.
	s.Close()
	s2, err := Open("log", Options{FS: mem.CrashClone(vfs.CrashCloneCfg{})})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if last, _ := s2.LastIndex(); last != 2 {
		t.Fatalf("reopened log ends at %d, want 2", last)
	}
}
