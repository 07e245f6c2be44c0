package raftlog

import (
	"bytes"
	"errors"
	"fmt"
	"math/rand/v2"
	"testing"

	"github.com/cockroachdb/pebble/v2/vfs"
	"go.etcd.io/raft/v3"
	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

func entry(i, term uint64, data []byte) *pb.Entry {
	return &pb.Entry{Index: new(i), Term: new(term), Type: pb.EntryNormal.Enum(), Data: data}
}

// model drives raft.MemoryStorage and a Storage with the same sequence of
// writes, all of them such as a raft Ready loop makes (commit never goes
// back, committed entries are never replaced, compaction stays within
// the committed log), and compares every query after each step.
type model struct {
	t   *testing.T
	rng *rand.Rand
	fs  *vfs.MemFS
	dir string
	ms  *raft.MemoryStorage
	s   *Storage
	// term is the highest term written; commit the highest commit.
	term, commit uint64
}

// reopen crashes the Storage and opens it again: the file system it
// reopens is a crash clone holding what was synced (and, at random, some
// of what was not), so every acknowledged write must have been synced.
func (m *model) reopen() {
	m.t.Helper()
	clone := m.fs.CrashClone(vfs.CrashCloneCfg{UnsyncedDataPercent: m.rng.IntN(101), RNG: m.rng})
	if err := m.s.Close(); err != nil {
		m.t.Fatal(err)
	}
	m.fs = clone
	s, err := Open(m.dir, Options{FS: m.fs})
	if err != nil {
		m.t.Fatalf("reopen: %v", err)
	}
	m.s = s
}

func (m *model) data() []byte {
	if m.rng.IntN(4) == 0 {
		return nil
	}
	b := make([]byte, m.rng.IntN(120))
	for i := range b {
		b[i] = byte(m.rng.Uint32())
	}
	return b
}

func (m *model) bounds() (first, last uint64) {
	first, _ = m.ms.FirstIndex()
	last, _ = m.ms.LastIndex()
	return first, last
}

// save makes one Ready: sometimes a snapshot from a leader, entries that
// may replace an uncommitted suffix, and a hard state.
func (m *model) save() string {
	first, last := m.bounds()
	var snap *pb.Snapshot
	if m.rng.IntN(8) == 0 {
		cur, _ := m.ms.Snapshot()
		lo := max(m.commit, cur.GetMetadata().GetIndex()) + 1
		idx := lo + uint64(m.rng.IntN(int(last+6-lo)))
		m.term += uint64(m.rng.IntN(2))
		snap = &pb.Snapshot{Data: m.data(), Metadata: &pb.SnapshotMetadata{
			Index: new(idx), Term: new(m.term), ConfState: &pb.ConfState{Voters: []uint64{1, 2, uint64(1 + m.rng.IntN(5))}}}}
		first, last = idx+1, idx
	}
	lo := last + 1
	if snap == nil && m.rng.IntN(3) == 0 {
		// Replace a suffix: never a committed entry, never before first.
		from := max(m.commit+1, first)
		lo = from + uint64(m.rng.IntN(int(last+2-from)))
	}
	if lo <= last {
		m.term++ // a conflicting entry comes from a newer leader
	}
	if m.term == 0 {
		m.term = 1
	}
	n := m.rng.IntN(6)
	var ents []*pb.Entry
	for k := range n {
		ents = append(ents, entry(lo+uint64(k), m.term, m.data()))
	}
	newLast := last
	if n > 0 {
		newLast = lo + uint64(n) - 1
	}
	var hs *pb.HardState
	if m.rng.IntN(5) != 0 {
		if snap != nil {
			m.commit = max(m.commit, snap.GetMetadata().GetIndex())
		}
		if newLast > m.commit {
			m.commit += uint64(m.rng.IntN(int(newLast - m.commit + 1)))
		}
		hs = &pb.HardState{Term: new(m.term), Vote: new(uint64(m.rng.IntN(4))), Commit: new(m.commit)}
	} else if snap != nil && snap.GetMetadata().GetIndex() > m.commit {
		// raft sends a snapshot with the hard state that commits it.
		m.commit = snap.GetMetadata().GetIndex()
		hs = &pb.HardState{Term: new(m.term), Vote: new(uint64(0)), Commit: new(m.commit)}
	}
	if snap != nil {
		if err := m.ms.ApplySnapshot(snap); err != nil {
			m.t.Fatalf("memory apply snapshot: %v", err)
		}
	}
	if err := m.ms.Append(ents); err != nil {
		m.t.Fatal(err)
	}
	if !raft.IsEmptyHardState(hs) {
		m.ms.SetHardState(hs)
	}
	if err := m.s.Save(hs, ents, snap); err != nil {
		m.t.Fatalf("save: %v", err)
	}
	return fmt.Sprintf("save(snap %d, entries [%d,+%d) term %d, commit %d)", snap.GetMetadata().GetIndex(), lo, n, m.term, hs.GetCommit())
}

func (m *model) compact() string {
	first, _ := m.bounds()
	// Mostly within the committed log; sometimes at or before the
	// first index, which both refuse with ErrCompacted.
	i := first - 1 - uint64(m.rng.IntN(int(first)))
	if m.commit >= first && m.rng.IntN(4) != 0 {
		i = first + uint64(m.rng.IntN(int(m.commit-first+1)))
	}
	compareErr(m.t, "compact", m.ms.Compact(i), m.s.Compact(i))
	return fmt.Sprintf("compact(%d)", i)
}

func (m *model) createSnapshot() string {
	first, _ := m.bounds()
	if m.commit < first-1 {
		return "create snapshot: nothing committed"
	}
	i := first - 1 + uint64(m.rng.IntN(int(m.commit-first+2)))
	var cs *pb.ConfState
	if m.rng.IntN(2) == 0 {
		cs = &pb.ConfState{Voters: []uint64{1, 2, 3}, Learners: []uint64{uint64(4 + m.rng.IntN(3))}}
	}
	data := m.data()
	want, errW := m.ms.CreateSnapshot(i, cs, data)
	got, errG := m.s.CreateSnapshot(i, cs, data)
	compareErr(m.t, "create snapshot", errW, errG)
	if errW == nil {
		compareSnap(m.t, "create snapshot", want, got)
	}
	return fmt.Sprintf("createSnapshot(%d)", i)
}

func (m *model) applySnapshot() string {
	_, last := m.bounds()
	cur, _ := m.ms.Snapshot()
	ci := cur.GetMetadata().GetIndex()
	// Newer than the commit index (as raft only sends such), or not
	// newer than the current snapshot, which both refuse.
	idx := m.commit + 1 + uint64(m.rng.IntN(int(last+4-m.commit)))
	if ci > 0 && m.rng.IntN(3) == 0 {
		idx = uint64(m.rng.IntN(int(ci + 1)))
	}
	term := m.term
	if idx > m.commit {
		m.term += uint64(m.rng.IntN(2))
		term = m.term
	}
	snap := &pb.Snapshot{Data: m.data(), Metadata: &pb.SnapshotMetadata{Index: new(idx), Term: new(term),
		ConfState: &pb.ConfState{Voters: []uint64{1, 2, 3}}}}
	errW := m.ms.ApplySnapshot(snap)
	errG := m.s.ApplySnapshot(snap)
	compareErr(m.t, "apply snapshot", errW, errG)
	if errW == nil && idx > m.commit {
		// The log now ends at idx: the commit index may not pass it.
		// (A Ready loop saves the matching hard state with it.)
		m.commit = idx
		hs := &pb.HardState{Term: new(m.term), Vote: new(uint64(0)), Commit: new(idx)}
		m.ms.SetHardState(hs)
		if err := m.s.Save(hs, nil, nil); err != nil {
			m.t.Fatal(err)
		}
	}
	return fmt.Sprintf("applySnapshot(%d)", idx)
}

// compare asks both storages every question raft may ask.
func (m *model) compare(step string) {
	t := m.t
	t.Helper()
	fw, _ := m.ms.FirstIndex()
	fg, err := m.s.FirstIndex()
	if err != nil || fw != fg {
		t.Fatalf("%s: FirstIndex = %d, %v; want %d", step, fg, err, fw)
	}
	lw, _ := m.ms.LastIndex()
	lg, err := m.s.LastIndex()
	if err != nil || lw != lg {
		t.Fatalf("%s: LastIndex = %d, %v; want %d", step, lg, err, lw)
	}
	for i := fw - min(fw, 2); i <= lw+1; i++ {
		tw, errW := m.ms.Term(i)
		tg, errG := m.s.Term(i)
		compareErr(t, fmt.Sprintf("%s: Term(%d)", step, i), errW, errG)
		if tw != tg {
			t.Fatalf("%s: Term(%d) = %d, want %d", step, i, tg, tw)
		}
	}
	for range 4 {
		lo := fw - min(fw, 1) + uint64(m.rng.IntN(int(lw-fw+3)))
		hi := lo + uint64(m.rng.IntN(int(lw+2-min(lo, lw+1))))
		hi = min(hi, lw+1)
		lo = min(lo, hi)
		maxSize := []uint64{0, 40, 150, 600, 1 << 62}[m.rng.IntN(5)]
		ew, errW := m.ms.Entries(lo, hi, maxSize)
		eg, errG := m.s.Entries(lo, hi, maxSize)
		what := fmt.Sprintf("%s: Entries(%d, %d, %d)", step, lo, hi, maxSize)
		compareErr(t, what, errW, errG)
		if len(ew) != len(eg) {
			t.Fatalf("%s: %d entries, want %d", what, len(eg), len(ew))
		}
		for k := range ew {
			if !sameEntry(ew[k], eg[k]) {
				t.Fatalf("%s: entry %d = %v, want %v", what, k, eg[k], ew[k])
			}
		}
	}
	hw, cw, _ := m.ms.InitialState()
	hg, cg, err := m.s.InitialState()
	if err != nil || !sameHard(hw, hg) || !proto.Equal(pb.EnsureConfState(cw), cg) {
		t.Fatalf("%s: InitialState = %v %v %v; want %v %v", step, hg, cg, err, hw, cw)
	}
	sw, _ := m.ms.Snapshot()
	sg, err := m.s.Snapshot()
	if err != nil {
		t.Fatalf("%s: Snapshot: %v", step, err)
	}
	compareSnap(t, step+": Snapshot", sw, sg)
}

func sameEntry(a, b *pb.Entry) bool {
	return a.GetIndex() == b.GetIndex() && a.GetTerm() == b.GetTerm() && a.GetType() == b.GetType() &&
		bytes.Equal(a.GetData(), b.GetData())
}

func sameHard(a, b *pb.HardState) bool {
	if raft.IsEmptyHardState(a) || raft.IsEmptyHardState(b) {
		return raft.IsEmptyHardState(a) == raft.IsEmptyHardState(b)
	}
	return a.GetTerm() == b.GetTerm() && a.GetVote() == b.GetVote() && a.GetCommit() == b.GetCommit()
}

func compareSnap(t *testing.T, what string, want, got *pb.Snapshot) {
	t.Helper()
	wm, gm := want.GetMetadata(), got.GetMetadata()
	if wm.GetIndex() != gm.GetIndex() || wm.GetTerm() != gm.GetTerm() || !bytes.Equal(want.GetData(), got.GetData()) ||
		!proto.Equal(pb.EnsureConfState(proto.Clone(wm.GetConfState()).(*pb.ConfState)), pb.EnsureConfState(gm.GetConfState())) {
		t.Fatalf("%s: snapshot %v, want %v", what, got, want)
	}
}

// compareErr requires the same outcome: both nil, or both the same
// raft sentinel.
func compareErr(t *testing.T, what string, want, got error) {
	t.Helper()
	for _, e := range []error{raft.ErrCompacted, raft.ErrUnavailable, raft.ErrSnapOutOfDate} {
		if errors.Is(want, e) != errors.Is(got, e) {
			t.Fatalf("%s: error %v, want %v", what, got, want)
		}
	}
	if (want == nil) != (got == nil) {
		t.Fatalf("%s: error %v, want %v", what, got, want)
	}
}

// TestMatchesMemoryStorage runs random Ready-loop sequences against
// raft.MemoryStorage and a Storage, crashing and reopening the Storage
// after every step: each write is visible exactly as the memory model has
// it, also after a crash right after it returned.
func TestMatchesMemoryStorage(t *testing.T) {
	seeds, steps := 20, 80
	if testing.Short() {
		seeds = 5
	}
	for seed := range seeds {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			fs := vfs.NewCrashableMem()
			s, err := Open("log", Options{FS: fs})
			if err != nil {
				t.Fatal(err)
			}
			m := &model{t: t, rng: rand.New(rand.NewPCG(uint64(seed), 13)), fs: fs, dir: "log", ms: raft.NewMemoryStorage(), s: s}
			defer func() { m.s.Close() }()
			var history []string
			defer func() {
				if t.Failed() {
					t.Logf("steps: %v", history)
				}
			}()
			for range steps {
				var step string
				switch r := m.rng.IntN(10); {
				case r < 6:
					step = m.save()
				case r < 8:
					step = m.compact()
				case r < 9:
					step = m.createSnapshot()
				default:
					step = m.applySnapshot()
				}
				history = append(history, step)
				m.compare(step)
				m.reopen()
				m.compare(step + " (reopened)")
			}
		})
	}
}
