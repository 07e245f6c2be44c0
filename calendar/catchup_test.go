package calendar

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
)

// localPeers reaches other members' services in process: member i+1 is
// peers[i]. The raft transport that carries the same calls between
// processes is tested in internal/raftnode.
type localPeers []*Service

func (p localPeers) Peers() []uint64 {
	ids := make([]uint64, len(p))
	for i := range p {
		ids[i] = uint64(i + 1)
	}
	return ids
}

func (p localPeers) Fetch(ctx context.Context, id uint64, req []byte, recv func([]byte) error) error {
	return p[id-1].ServeFetch(ctx, req, recv)
}

// failingPeer answers the first parts of a fetch, then fails.
type failingPeer struct {
	svc   *Service
	parts int
}

type mixedPeers []any // *Service or *failingPeer

func (p mixedPeers) Peers() []uint64 { return localPeers(make([]*Service, len(p))).Peers() }

func (p mixedPeers) Fetch(ctx context.Context, id uint64, req []byte, recv func([]byte) error) error {
	switch m := p[id-1].(type) {
	case *Service:
		return m.ServeFetch(ctx, req, recv)
	case *stallingPeer:
		n := 0
		return m.svc.ServeFetch(ctx, req, func(b []byte) error {
			if n == m.parts {
				<-ctx.Done()
				return ctx.Err()
			}
			n++
			return recv(b)
		})
	case *failingPeer:
		n := 0
		errBroken := errors.New("connection broken (test)")
		err := m.svc.ServeFetch(ctx, req, func(b []byte) error {
			if n == m.parts {
				return errBroken
			}
			n++
			return recv(b)
		})
		return err
	}
	return fmt.Errorf("no member %d", id)
}

// catchupMember is a calendar member: its store (holding leaves for
// seconds from start, if any), its publisher and its service.
type catchupMember struct {
	st  *Store
	w   *Watermark
	pub *Publisher
	svc *Service
	log *proposals
}

func newCatchupMember(t testing.TB, keys *pki.Set, now *time.Time, start uint64, leaves []ksi.Imprint) *catchupMember {
	t.Helper()
	dir := t.TempDir()
	st := openTest(t, filepath.Join(dir, "calendar"))
	t.Cleanup(func() { st.Close() })
	w, _, err := OpenWatermark(filepath.Join(dir, "watermark"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	if len(leaves) > 0 {
		root, err := st.AppendRange(start, leaves, true)
		if err != nil {
			t.Fatal(err)
		}
		// Everything it holds, it has answered.
		if err := w.Answered(start+uint64(len(leaves))-1, root); err != nil {
			t.Fatal(err)
		}
	}
	m := &catchupMember{st: st, w: w, log: &proposals{}}
	m.pub, err = NewPublisher(PublisherConfig{Store: st, Watermark: w, Signer: keys, Period: 10 * time.Second, RepositoryURI: "http://leader.test/publications.bin",
		Now: func() time.Time { return *now }, Logger: discardLogger(), Log: m.log})
	if err != nil {
		t.Fatal(err)
	}
	m.svc, err = NewService(ServiceConfig{Store: st, Watermark: w, Signer: keys, Logger: discardLogger(), Log: m.log, Now: func() time.Time { return *now }})
	if err != nil {
		t.Fatal(err)
	}
	m.svc.SetPublisher(m.pub)
	return m
}

// append adds leaves for seconds from t and marks them answered.
func (m *catchupMember) append(t testing.TB, start uint64, leaves []ksi.Imprint, sync bool) {
	t.Helper()
	root, err := m.st.AppendRange(start, leaves, sync)
	if err != nil {
		t.Fatal(err)
	}
	if sync {
		if err := m.w.Answered(start+uint64(len(leaves))-1, root); err != nil {
			t.Fatal(err)
		}
	}
}

// publish makes the member's newest due publication through its log.
func (m *catchupMember) publish(t testing.TB) {
	t.Helper()
	if _, err := m.pub.PublishDue(); err != nil {
		t.Fatal(err)
	}
	e, err := DecodePublicationEntry(m.log.data[len(m.log.data)-1])
	if err != nil {
		t.Fatal(err)
	}
	if err := m.pub.ApplyPublication(e); err != nil {
		t.Fatal(err)
	}
}

func leavesFor(from, n uint64) []ksi.Imprint {
	out := make([]ksi.Imprint, n)
	for i := range out {
		out[i] = leafFor(from + uint64(i))
	}
	return out
}

// sameCalendar fails unless b holds a's seconds with the same leaves,
// roots and (once there are publications) publications file.
func sameCalendar(t *testing.T, a, b *catchupMember) {
	t.Helper()
	f1, l1, _ := a.st.Head()
	f2, l2, _ := b.st.Head()
	if f1 != f2 || l1 != l2 {
		t.Fatalf("restored calendar holds %d..%d, the peer %d..%d", f2, l2, f1, l1)
	}
	for s := f1; s <= l1; s += 997 {
		x, _ := a.st.Leaf(s)
		y, err := b.st.Leaf(s)
		if err != nil || !x.Equal(y) {
			t.Fatalf("second %d: restored leaf %s (%v), the peer's %s", s, y, err, x)
		}
	}
	r1, _ := a.st.Root(l1)
	r2, _ := b.st.Root(l1)
	if !r1.Equal(r2) {
		t.Fatalf("root after %d: restored %s, the peer's %s", l1, r2, r1)
	}
	// Until the first publication each member serves its own file.
	fa, _ := a.pub.File()
	fb, _ := b.pub.File()
	if len(a.pub.Publications()) > 0 && !bytes.Equal(fa, fb) {
		t.Fatal("the restored member serves another publications file than its peer")
	}
}

// A wiped member restores a snapshot of a calendar of 40,000 seconds
// with two publications: it fetches the leaves (in several parts) and
// the records, and ends with the same calendar, root and byte-identical
// publications file, as of the snapshot's index; a restart-like second
// restore changes nothing.
func TestRestoreFetchesCalendar(t *testing.T) {
	const n = 40_000
	now := time.Unix(1_800_000_000, 0)
	start := uint64(now.Unix()) - n
	sets, err := pki.InitMembers(filepath.Join(t.TempDir(), "keys"), 2, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := newCatchupMember(t, sets[0], &now, start, leavesFor(0, n/2))
	src.publish(t)
	src.append(t, start+n/2, leavesFor(n/2, n/2), true)
	src.publish(t)
	if got := len(src.pub.Publications()); got != 2 {
		t.Fatalf("the source has %d publications, want 2", got)
	}
	data, err := src.svc.Snapshot()
	if err != nil {
		t.Fatal(err)
	}

	dst := newCatchupMember(t, sets[1], &now, 0, nil)
	if err := dst.svc.RestoreFrom(context.Background(), 77, data, localPeers{src.svc}); err != nil {
		t.Fatal(err)
	}
	sameCalendar(t, src, dst)
	if got := dst.st.Applied(); got != 77 {
		t.Fatalf("applied index after the restore %d, want 77", got)
	}
	if err := dst.svc.RestoreFrom(context.Background(), 78, data, localPeers{src.svc}); err != nil {
		t.Fatalf("restoring a snapshot the member already holds: %v", err)
	}
	sameCalendar(t, src, dst)

	// The first peer breaks after two parts; the second gives the rest.
	half := newCatchupMember(t, sets[1], &now, 0, nil)
	if err := half.svc.RestoreFrom(context.Background(), 77, data, mixedPeers{&failingPeer{svc: src.svc, parts: 2}, src.svc}); err != nil {
		t.Fatal(err)
	}
	sameCalendar(t, src, half)
}

// A peer that sends other leaves than the committed calendar (one leaf
// changed) is caught by the root before the last batch is written: what
// it sent is dropped and the next peer gives the cluster's calendar; with
// no honest peer the member stops. A member whose own answered calendar
// differs is refused before anything is written. A peer without the
// seconds, or one that stalls, is tried again and again until the
// restore is given up (the member stopped).
func TestRestoreRefusesOtherHistories(t *testing.T) {
	const n = 40_000
	now := time.Unix(1_800_000_000, 0)
	start := uint64(now.Unix()) - n
	sets, err := pki.InitMembers(filepath.Join(t.TempDir(), "keys"), 2, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := newCatchupMember(t, sets[0], &now, start, leavesFor(0, n))
	data, err := src.svc.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	defer func(r, s time.Duration) { fetchRetry, fetchStall = r, s }(fetchRetry, fetchStall)
	fetchRetry = time.Millisecond

	lying := leavesFor(0, n)
	lying[n-10] = leafFor(999_999)
	liar := newCatchupMember(t, sets[0], &now, start, lying)
	dst := newCatchupMember(t, sets[1], &now, 0, nil)
	err = dst.svc.RestoreFrom(context.Background(), 5, data, localPeers{liar.svc})
	if !errors.Is(err, ErrHistoryLost) {
		t.Fatalf("restore from a lying peer only: %v, want ErrHistoryLost", err)
	}
	if _, _, ok := dst.st.Head(); ok {
		t.Fatal("what the lying peer sent was kept")
	}
	if dst.st.Applied() != 0 {
		t.Fatal("a failed restore recorded the snapshot's index as applied")
	}
	// The liar first, then an honest peer: the restore succeeds.
	if err := dst.svc.RestoreFrom(context.Background(), 5, data, localPeers{liar.svc, src.svc}); err != nil {
		t.Fatalf("restore from a liar and an honest peer: %v", err)
	}
	sameCalendar(t, src, dst)

	// Its own answered first 100 seconds differ from the cluster's.
	own := newCatchupMember(t, sets[1], &now, start, leavesFor(500_000, 100))
	err = own.svc.RestoreFrom(context.Background(), 5, data, localPeers{src.svc})
	if !errors.Is(err, ErrHistoryLost) {
		t.Fatalf("restore onto another history: %v, want ErrHistoryLost", err)
	}
	if _, last, _ := own.st.Head(); last != start+99 {
		t.Fatalf("a member on another history appended what the peer sent (ends at %d)", last)
	}

	// A peer that holds fewer seconds than the snapshot: tried until
	// the member gives up.
	short := newCatchupMember(t, sets[0], &now, start, leavesFor(0, n/2))
	late := newCatchupMember(t, sets[1], &now, 0, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	err = late.svc.RestoreFrom(ctx, 5, data, localPeers{short.svc})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("restore from a peer without the seconds: %v, want it tried until stopped", err)
	}

	// A peer that stalls after a part is given up on; the next answers.
	fetchStall = 200 * time.Millisecond
	stalled := newCatchupMember(t, sets[1], &now, 0, nil)
	if err := stalled.svc.RestoreFrom(context.Background(), 5, data, mixedPeers{&stallingPeer{svc: src.svc, parts: 2}, src.svc}); err != nil {
		t.Fatalf("restore past a stalled peer: %v", err)
	}
	sameCalendar(t, src, stalled)
}

// stallingPeer answers the first parts of a fetch, then sends nothing
// until the fetch is given up.
type stallingPeer struct {
	svc   *Service
	parts int
}

// A snapshot written before snapshots carried the publications cannot
// restore a member that lacks seconds: it would not know which
// publications to fetch.
func TestRestoreRefusesLegacySnapshot(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	sets, err := pki.InitMembers(filepath.Join(t.TempDir(), "keys"), 2, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := newCatchupMember(t, sets[0], &now, uint64(now.Unix())-100, leavesFor(0, 100))
	data, err := src.svc.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dst := newCatchupMember(t, sets[1], &now, 0, nil)
	err = dst.svc.RestoreFrom(context.Background(), 5, data[:snapshotLen], localPeers{src.svc})
	if err == nil || !strings.Contains(err.Error(), "older Tempel") {
		t.Fatalf("restore from a legacy snapshot: %v", err)
	}
	// A member that holds the seconds takes it: nothing to fetch.
	if err := src.svc.RestoreFrom(context.Background(), 5, data[:snapshotLen], nil); err != nil {
		t.Fatalf("a member holding the seconds refused the legacy snapshot: %v", err)
	}
}

// A member whose own list of members' certificates differs from the one
// the file was signed with (it was added later) still rebuilds the
// cluster's file: the snapshot carries the certificates.
func TestRestorePublicationsOtherCertificates(t *testing.T) {
	const n = 30
	now := time.Unix(1_800_000_000, 0)
	start := uint64(now.Unix()) - n
	dir := t.TempDir()
	old, err := pki.InitMembers(filepath.Join(dir, "old"), 2, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	bigger, err := pki.InitMembers(filepath.Join(dir, "new"), 3, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	src := newCatchupMember(t, old[0], &now, start, leavesFor(0, n))
	src.publish(t)
	data, err := src.svc.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	dst := newCatchupMember(t, bigger[2], &now, 0, nil)
	if err := dst.svc.RestoreFrom(context.Background(), 9, data, localPeers{src.svc}); err != nil {
		t.Fatal(err)
	}
	sameCalendar(t, src, dst)
}

// The descriptor's encoding: a round trip, the older form without
// publications, and damage refused.
func TestSnapshotDescriptor(t *testing.T) {
	d := &snapshotDesc{first: 10, last: 99, root: leafFor(3),
		pubs: &pubSnapshot{count: 2, latest: 90, creationTime: 1234, uri: "http://x.test/p.bin", signature: []byte("sig")}}
	got, err := decodeSnapshotDesc(d.encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.first != 10 || got.last != 99 || !got.root.Equal(d.root) || got.pubs == nil || !bytes.Equal(got.pubs.signature, d.pubs.signature) ||
		got.pubs.count != 2 || got.pubs.latest != 90 || got.pubs.creationTime != 1234 || got.pubs.uri != d.pubs.uri {
		t.Fatalf("round trip: %+v", got)
	}
	old := d.encode()[:snapshotLen]
	if got, err := decodeSnapshotDesc(old); err != nil || got.pubs != nil || got.last != 99 {
		t.Fatalf("the older form: %+v, %v", got, err)
	}
	for _, bad := range [][]byte{nil, old[:20], append(d.encode(), 0), append(old, 1)} {
		if _, err := decodeSnapshotDesc(bad); !errors.Is(err, ErrBadEntry) {
			t.Errorf("damaged descriptor of %d bytes: %v, want ErrBadEntry", len(bad), err)
		}
	}
}

func FuzzDecodeSnapshotDesc(f *testing.F) {
	d := &snapshotDesc{first: 10, last: 99, root: leafFor(3),
		pubs: &pubSnapshot{count: 2, latest: 90, creationTime: 1234, uri: "http://x.test/p.bin", signature: []byte("sig")}}
	f.Add(d.encode())
	f.Add(d.encode()[:snapshotLen])
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeSnapshotDesc(b)
		if err != nil {
			return
		}
		again, err := decodeSnapshotDesc(d.encode())
		if err != nil || !bytes.Equal(again.encode(), d.encode()) {
			t.Fatalf("a decoded descriptor does not round-trip: %v", err)
		}
	})
}
