package raftlog

import (
	"strings"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	pb "go.etcd.io/raft/v3/raftpb"
)

// TestRefusesWhatRaftNeverAsks checks that calls raft.MemoryStorage would
// panic on, or that would lose committed entries, get an error and
// change nothing.
func TestRefusesWhatRaftNeverAsks(t *testing.T) {
	hs := func(term, commit uint64) *pb.HardState {
		return &pb.HardState{Term: new(term), Vote: new(uint64(1)), Commit: new(commit)}
	}
	snap := func(idx, term uint64) *pb.Snapshot {
		return &pb.Snapshot{Metadata: &pb.SnapshotMetadata{Index: new(idx), Term: new(term), ConfState: &pb.ConfState{Voters: []uint64{1}}}}
	}
	cases := []struct {
		name string
		call func(s *Storage) error
		want string
	}{
		{"entries not consecutive", func(s *Storage) error {
			return s.Save(nil, []*pb.Entry{entry(11, 2, nil), entry(13, 2, nil)}, nil)
		}, "not consecutive"},
		{"gap after the log", func(s *Storage) error {
			return s.Save(nil, []*pb.Entry{entry(12, 2, nil)}, nil)
		}, "would leave a gap after the last index 10"},
		{"commit past the log", func(s *Storage) error {
			return s.Save(hs(2, 11), nil, nil)
		}, "commits index 11 past the last index 10"},
		{"replacing committed entries", func(s *Storage) error {
			return s.Save(nil, []*pb.Entry{entry(8, 2, nil)}, nil)
		}, "would replace committed entries (commit 8)"},
		{"snapshot behind the commit index", func(s *Storage) error {
			return s.ApplySnapshot(snap(5, 1))
		}, "snapshot at 5 is behind the commit index 8"},
		{"entries past the log", func(s *Storage) error {
			_, err := s.Entries(5, 12, 1<<20)
			return err
		}, "asked past the last index 10"},
		{"compact past the log", func(s *Storage) error {
			return s.Compact(11)
		}, "compact at 11 past the last index 10"},
		{"snapshot past the log", func(s *Storage) error {
			_, err := s.CreateSnapshot(11, nil, nil)
			return err
		}, "snapshot at 11 past the last index 10"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := Open("log", Options{FS: vfs.NewMem()})
			if err != nil {
				t.Fatal(err)
			}
			defer s.Close()
			var ents []*pb.Entry
			for i := uint64(1); i <= 10; i++ {
				ents = append(ents, entry(i, 1, []byte{byte(i)}))
			}
			if err := s.Save(hs(1, 8), ents, nil); err != nil {
				t.Fatal(err)
			}
			err = c.call(s)
			if err == nil || !strings.HasPrefix(err.Error(), "raftlog: ") || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want one saying %q", err, c.want)
			}
			first, _ := s.FirstIndex()
			last, _ := s.LastIndex()
			h, _, _ := s.InitialState()
			if first != 1 || last != 10 || h.GetCommit() != 8 || h.GetTerm() != 1 {
				t.Fatalf("after a refused call: first %d last %d hard state %v", first, last, h)
			}
		})
	}
}
