package calendar

import (
	"context"
	"errors"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/raftnode"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	"github.com/tempel-ksi/tempel/verifier"
)

// replicaService is a calendar member of a one-member raft cluster: the
// real log, on disk, applying to the service.
func replicaService(t *testing.T, now func() time.Time) (*Service, *raftnode.Node) {
	t.Helper()
	dir := t.TempDir()
	st := openTest(t, filepath.Join(dir, "calendar"))
	t.Cleanup(func() { st.Close() })
	l := &testLog{}
	svc, err := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Logger: discardLogger(), Log: l, Now: now})
	if err != nil {
		t.Fatal(err)
	}
	n, err := raftnode.Start(raftnode.Config{ID: 1, Peers: map[uint64]string{1: "127.0.0.1:1"}, Dir: filepath.Join(dir, "raft"),
		StateMachine: svc, Transport: raftnode.NewGRPCTransport(raftnode.GRPCOptions{}), TickInterval: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { n.Stop() })
	l.n = n
	return svc, n
}

// testLog is the service's view of the raft node, as the node package
// gives it (internal/node/cluster.go).
type testLog struct{ n *raftnode.Node }

func (l *testLog) Propose(ctx context.Context, data []byte) error { return l.n.Propose(ctx, data) }
func (l *testLog) Leading() bool {
	if l.n == nil {
		return false
	}
	st := l.n.Status()
	return st.IsLeader && st.HasQuorum && st.Applied >= st.Commit
}
func (l *testLog) Leader() string { return "" }

// The leader's roots reach the calendar only through the log: Sign
// returns once the entry is committed and applied, and the signature's
// calendar root is the store's root after its second, recorded with the
// entry's raft index.
func TestReplicaSignsThroughTheLog(t *testing.T) {
	svc, n := replicaService(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go svc.Run(ctx)
	deadline := time.Now().Add(10 * time.Second)
	for !(&testLog{n}).Leading() {
		if time.Now().After(deadline) {
			t.Fatal("no leader within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	doc := leafFor(42)
	raw, err := svc.Sign(ctx, doc, 0, "tester")
	if err != nil {
		t.Fatal(err)
	}
	sig, err := ksi.ParseSignature(raw)
	if err != nil {
		t.Fatal(err)
	}
	if rep := verifier.Verify(ctx, sig, verifier.Internal, verifier.Options{Document: doc}); rep.Err() != nil {
		t.Fatal(rep.Err())
	}
	var h ksi.Hasher
	root, err := sig.CalendarChain.Output(&h)
	if err != nil {
		t.Fatal(err)
	}
	got, err := svc.Store().Root(sig.CalendarChain.PublicationTime)
	if err != nil || !got.Equal(root) {
		t.Fatalf("store root %s (%v), signature's %s", got, err, root)
	}
	if svc.Applied() == 0 || svc.Applied() > n.Status().Applied {
		t.Fatalf("store applied index %d, raft applied %d", svc.Applied(), n.Status().Applied)
	}
}

// Apply appends each second once, refuses an entry proposed on another
// calendar, and stops on bytes that are not an entry.
func TestReplicaApplyRules(t *testing.T) {
	st := openTest(t, t.TempDir())
	defer st.Close()
	svc, err := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Logger: discardLogger(), Log: &testLog{}})
	if err != nil {
		t.Fatal(err)
	}
	apply := func(index uint64, e SecondEntry) error {
		t.Helper()
		b, err := e.Encode(nil)
		if err != nil {
			t.Fatal(err)
		}
		return svc.Apply(index, b)
	}
	if err := apply(5, SecondEntry{T: 1000, Roots: []round.Request{{Hash: leafFor(1), Meta: []byte{1}}}}); err != nil {
		t.Fatal(err)
	}
	root1000 := st.State().Root()
	// The same second again (a proposal committed twice): nothing changes.
	if err := apply(6, SecondEntry{T: 1000, PrevLast: 999, PrevRoot: leafFor(7)}); err != nil {
		t.Fatalf("duplicate second: %v", err)
	}
	if st.Applied() != 5 || !st.State().Root().Equal(root1000) {
		t.Fatalf("a duplicate entry changed the calendar: applied %d", st.Applied())
	}
	// Proposed on a calendar with another root after 1000.
	if err := apply(7, SecondEntry{T: 1003, PrevLast: 1000, PrevRoot: leafFor(8)}); !errors.Is(err, ErrHistoryLost) {
		t.Fatalf("entry on another calendar: %v, want ErrHistoryLost", err)
	}
	// Proposed on a calendar that ended later than this one.
	if err := apply(7, SecondEntry{T: 1003, PrevLast: 1001, PrevRoot: root1000}); !errors.Is(err, ErrHistoryLost) {
		t.Fatalf("entry on a longer calendar: %v, want ErrHistoryLost", err)
	}
	if err := apply(7, SecondEntry{T: 1003, PrevLast: 1000, PrevRoot: root1000}); err != nil {
		t.Fatal(err)
	}
	if first, last, _ := st.Head(); first != 1000 || last != 1003 || st.Applied() != 7 {
		t.Fatalf("calendar %d..%d applied %d, want 1000..1003 at 7 (gap filled)", first, last, st.Applied())
	}
	// A proposal that timed out uncommitted and was committed after the
	// next one was proposed on the older calendar: it appends after what
	// is there, since this calendar's root after 1000 is the proposer's.
	if err := apply(8, SecondEntry{T: 1005, PrevLast: 1000, PrevRoot: root1000}); err != nil {
		t.Fatalf("entry proposed on an earlier state of this calendar: %v", err)
	}
	if _, last, _ := st.Head(); last != 1005 {
		t.Fatalf("calendar ends at %d, want 1005", last)
	}
	// The same, but the root after 1000 differs: another history.
	if err := apply(9, SecondEntry{T: 1007, PrevLast: 1003, PrevRoot: root1000}); !errors.Is(err, ErrHistoryLost) {
		t.Fatalf("entry on an earlier state of another calendar: %v, want ErrHistoryLost", err)
	}
	// Roots that cannot be built into a tree (a level leaving no room):
	// the second closes empty, as on a single calendar, and every member
	// goes on.
	state := st.State()
	if err := apply(10, SecondEntry{T: 1009, PrevLast: state.Last(), PrevRoot: state.Root(),
		Roots: []round.Request{{Hash: leafFor(3), Level: 0xFF, Meta: []byte{1}}}}); err != nil {
		t.Fatalf("unbuildable roots stopped the member: %v", err)
	}
	if leaf, err := st.Leaf(1009); err != nil || !leaf.Equal(EmptyLeaf) {
		t.Fatalf("second 1009: leaf %s (%v), want the empty leaf", leaf, err)
	}
	if err := svc.Apply(10, []byte("not an entry")); !errors.Is(err, ErrBadEntry) {
		t.Fatalf("garbage entry: %v", err)
	}
	if err := svc.Apply(11, nil); err != nil {
		t.Fatalf("the leader's empty entry: %v", err)
	}
}

// A replicated second takes roots until its log entry would pass
// MaxEntryBytes; the next root is refused at once (ErrOverloaded), not
// left to fail the whole second when the entry is proposed.
func TestReplicaEntryFull(t *testing.T) {
	// A clock that stays in one second: every root goes to it.
	clock := &fakeClock{t: time.Unix(1_800_000_000, 200e6)}
	svc, n := replicaService(t, clock.Now)
	deadline := time.Now().Add(10 * time.Second)
	for !(&testLog{n}).Leading() {
		if time.Now().After(deadline) {
			t.Fatal("no leader within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	// Seconds never close (no Run): every root waits in the open second.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	id := string(make([]byte, 900)) // ~1 KB of metadata per root
	refused := make(chan error, 1)
	for i := 0; i < 1000; i++ {
		go func() {
			if _, err := svc.Sign(ctx, leafFor(uint64(i)), 0, id); errors.Is(err, ErrOverloaded) {
				refused <- err
			}
		}()
		// One at a time: the root is queued or refused before the next.
		for svc.pendingCount() < i+1 {
			select {
			case err := <-refused:
				if i*1000 < MaxEntryBytes*9/10 {
					t.Fatalf("refused after %d roots: %v", i, err)
				}
				return
			case <-time.After(time.Millisecond):
			}
		}
	}
	t.Fatalf("%d roots of ~1 KB taken by one second", svc.pendingCount())
}

// noLeaderLog is the log of a member that sees no leader (the others
// are down): it counts how often the calendar asks.
type noLeaderLog struct{ asked atomic.Int64 }

func (l *noLeaderLog) Propose(context.Context, []byte) error { return errors.New("no leader") }
func (l *noLeaderLog) Leading() bool                         { l.asked.Add(1); return false }
func (l *noLeaderLog) Leader() string                        { return "" }

// A follower's second loop does not spin: with no second applied its
// next close is always due, yet it only looks now and then whether it
// leads.
func TestReplicaFollowerDoesNotSpin(t *testing.T) {
	st := openTest(t, filepath.Join(t.TempDir(), "calendar"))
	defer st.Close()
	l := &noLeaderLog{}
	svc, err := NewService(ServiceConfig{Store: st, Signer: newRSASigner(t), Logger: discardLogger(), Log: l})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- svc.Run(ctx) }()
	const watch = 3 * time.Second // past the second the calendar started in
	start := time.Now()
	<-time.After(watch)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := l.asked.Load(); n > 200 {
		t.Fatalf("the second loop asked whether it leads %d times in %v: it spins", n, time.Since(start).Round(time.Millisecond))
	}
}
