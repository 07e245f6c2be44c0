package raftlog

import (
	"testing"

	pb "go.etcd.io/raft/v3/raftpb"
)

// BenchmarkSaveSynced is one Ready of one 1 KB entry and a hard state:
// the cost of making a proposal durable on one member (a synced write).
func BenchmarkSaveSynced(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 1024)
	i := uint64(0)
	b.SetBytes(int64(len(data)))
	for b.Loop() {
		i++
		hs := &pb.HardState{Term: new(uint64(1)), Vote: new(uint64(1)), Commit: new(i)}
		if err := s.Save(hs, []*pb.Entry{entry(i, 1, data)}, nil); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkEntries100 reads 100 entries of 1 KB, as raft does to send an
// append to a follower or to hand committed entries to the application.
func BenchmarkEntries100(b *testing.B) {
	s, err := Open(b.TempDir(), Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	data := make([]byte, 1024)
	var ents []*pb.Entry
	for i := uint64(1); i <= 1000; i++ {
		ents = append(ents, entry(i, 1, data))
	}
	if err := s.Save(nil, ents, nil); err != nil {
		b.Fatal(err)
	}
	lo := uint64(1)
	for b.Loop() {
		got, err := s.Entries(lo, lo+100, 1<<30)
		if err != nil || len(got) != 100 {
			b.Fatalf("%d entries, %v", len(got), err)
		}
		lo = lo%900 + 1
	}
}
