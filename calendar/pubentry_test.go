package calendar

import (
	"bytes"
	"context"
	"crypto/x509"
	"errors"
	"path/filepath"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// proposals records what a leader proposes, as the log would carry it.
type proposals struct{ data [][]byte }

func (p *proposals) Propose(_ context.Context, b []byte) error {
	p.data = append(p.data, append([]byte(nil), b...))
	return nil
}
func (p *proposals) Leading() bool  { return true }
func (p *proposals) Leader() string { return "" }

// pubMembers makes two members of one PKI whose calendars hold the same
// n seconds from *now-back, each with a publisher proposing to log and
// reading the clock at *now, which the test moves.
func pubMembers(t *testing.T, now *time.Time, back uint64, n int) ([]*pki.Set, []*Publisher, []*Store, *proposals) {
	t.Helper()
	dir := t.TempDir()
	sets, err := pki.InitMembers(filepath.Join(dir, "keys"), 2, pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	log := &proposals{}
	var pubs []*Publisher
	var stores []*Store
	for i, keys := range sets {
		st := openTest(t, filepath.Join(dir, "cal", string(rune('a'+i))))
		t.Cleanup(func() { st.Close() })
		leaves := make([]ksi.Imprint, n)
		for j := range leaves {
			leaves[j] = leafFor(uint64(j))
		}
		if _, err := st.AppendRange(uint64(now.Unix())-back, leaves, true); err != nil {
			t.Fatal(err)
		}
		p, err := NewPublisher(PublisherConfig{Store: st, Signer: keys, Period: 10 * time.Second, RepositoryURI: "http://leader.test/publications.bin",
			Now: func() time.Time { return *now }, Logger: discardLogger(), Log: log})
		if err != nil {
			t.Fatal(err)
		}
		pubs, stores = append(pubs, p), append(stores, st)
	}
	return sets, pubs, stores, log
}

// Two members with the same calendar and one PKI: the leader's publisher
// proposes instead of storing; applying the entry on either member
// stores and serves the byte-identical file, which verifies; applying
// it again changes nothing; an entry with another root stops a member.
func TestPublicationThroughTheLog(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	sets, pubs, stores, log := pubMembers(t, &now, 5, 12)
	if rec, err := pubs[0].PublishDue(); err != nil || rec != nil {
		t.Fatalf("the leader published directly: %v %v", rec, err)
	}
	if pubs[0].Latest() != nil || len(log.data) != 1 {
		t.Fatalf("want one proposal and nothing stored, got %d proposals", len(log.data))
	}
	if _, err := pubs[0].PublishDue(); err != nil || len(log.data) != 1 {
		t.Fatalf("proposed again at once: %d proposals, %v", len(log.data), err)
	}
	e, err := DecodePublicationEntry(log.data[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pubs {
		if err := p.ApplyPublication(e); err != nil {
			t.Fatal(err)
		}
		if err := p.ApplyPublication(e); err != nil {
			t.Fatalf("applied twice: %v", err)
		}
	}
	f0, _ := pubs[0].File()
	f1, _ := pubs[1].File()
	if !bytes.Equal(f0, f1) {
		t.Fatal("the members serve different publications files")
	}
	pf, err := ksi.ParsePublicationsFile(f0)
	if err != nil || len(pf.Publications) != 1 || len(pf.Certificates) != 2 {
		t.Fatalf("file: %v, %d publications, %d certificates", err, len(pf.Publications), len(pf.Certificates))
	}
	if err := verifyFile(t, sets[0], pf); err != nil {
		t.Fatalf("the replicated file does not verify: %v", err)
	}
	// A member whose calendar has another root at the publication time.
	other := *e
	other.Time += 10
	other.Root = leafFor(99)
	if _, err := stores[1].AppendRange(uint64(now.Unix())+7, []ksi.Imprint{leafFor(50), leafFor(51), leafFor(52), leafFor(53)}, true); err != nil {
		t.Fatal(err)
	}
	rec, err := ksi.NewPublicationRecord(ksi.TypePubFileRecord, ksi.NewPublishedData(other.Time, other.Root), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	other.Record = rec.Raw
	if err := pubs[1].ApplyPublication(&other); !errors.Is(err, ErrHistoryLost) {
		t.Fatalf("publication of another root: %v, want ErrHistoryLost", err)
	}
}

// verifyFile checks a publications file against the keys' root and constraint.
func verifyFile(t *testing.T, keys *pki.Set, pf *ksi.PublicationsFile) error {
	t.Helper()
	pool := x509.NewCertPool()
	pool.AddCert(keys.Root)
	c, err := verifier.ParseConstraint(keys.Constraint())
	if err != nil {
		t.Fatal(err)
	}
	return verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: pool, Constraints: []verifier.Constraint{c}, Time: time.Now()})
}

func TestPublicationEntryRoundTrip(t *testing.T) {
	e := &PublicationEntry{Time: 1_800_000_000, Root: leafFor(1), CreationTime: 1_800_000_003, RepositoryURI: "http://x/publications.bin",
		Record: []byte{1, 2, 3}, Signature: []byte{4, 5}}
	b, err := e.Encode(nil)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodePublicationEntry(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Time != e.Time || !got.Root.Equal(e.Root) || got.CreationTime != e.CreationTime || got.RepositoryURI != e.RepositoryURI ||
		!bytes.Equal(got.Record, e.Record) || !bytes.Equal(got.Signature, e.Signature) {
		t.Fatalf("decoded %+v, want %+v", got, e)
	}
	for _, bad := range [][]byte{b[:len(b)-1], append(append([]byte(nil), b...), 0), b[:20]} {
		if _, err := DecodePublicationEntry(bad); !errors.Is(err, ErrBadEntry) {
			t.Errorf("%x: %v, want ErrBadEntry", bad, err)
		}
	}
	if _, err := DecodeSecondEntry(b); !errors.Is(err, ErrBadEntry) {
		t.Errorf("a publication decoded as a second: %v", err)
	}
}

// FuzzDecodePublicationEntry: an entry or ErrBadEntry, never a panic;
// what decodes encodes to the same bytes.
func FuzzDecodePublicationEntry(f *testing.F) {
	e := &PublicationEntry{Time: 7, Root: leafFor(1), CreationTime: 9, RepositoryURI: "u", Record: []byte{1}, Signature: []byte{2}}
	b, err := e.Encode(nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := DecodePublicationEntry(b)
		if err != nil {
			if !errors.Is(err, ErrBadEntry) {
				t.Fatalf("error not ErrBadEntry: %v", err)
			}
			return
		}
		again, err := e.Encode(nil)
		if err != nil || !bytes.Equal(again, b) {
			t.Fatalf("re-encoded %x (%v), decoded from %x", again, err, b)
		}
	})
}

// A leader that proposes the next publication before its previous one is
// applied signs a content without the previous one; every member then
// rebuilds the content with it. No member may serve the leader's
// signature on content it does not cover: the stale entry is skipped,
// and the leader's next proposal, built on what was applied, is served.
func TestPublicationBuiltOnOtherPublications(t *testing.T) {
	now := time.Unix(1_800_000_000, 0)
	sets, pubs, stores, log := pubMembers(t, &now, 25, 30)
	// The calendar ends at now+4: the boundary is now. Propose it, then
	// (before it is applied) the calendar passes the next boundary.
	if _, err := pubs[0].PublishDue(); err != nil || len(log.data) != 1 {
		t.Fatalf("%d proposals, %v", len(log.data), err)
	}
	for _, st := range stores {
		more := make([]ksi.Imprint, 10)
		for j := range more {
			more[j] = leafFor(uint64(100 + j))
		}
		if _, err := st.AppendRange(uint64(now.Unix())+5, more, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := pubs[0].PublishDue(); err != nil || len(log.data) != 2 {
		t.Fatalf("%d proposals, %v", len(log.data), err)
	}
	apply := func(data []byte) {
		t.Helper()
		e, err := DecodePublicationEntry(data)
		if err != nil {
			t.Fatal(err)
		}
		for _, p := range pubs {
			if err := p.ApplyPublication(e); err != nil {
				t.Fatal(err)
			}
		}
	}
	check := func(want int) {
		t.Helper()
		f0, _ := pubs[0].File()
		f1, _ := pubs[1].File()
		if !bytes.Equal(f0, f1) {
			t.Fatal("the members serve different publications files")
		}
		pf, err := ksi.ParsePublicationsFile(f0)
		if err != nil {
			t.Fatal(err)
		}
		if err := verifyFile(t, sets[0], pf); err != nil {
			t.Fatalf("the served file does not verify: %v", err)
		}
		if len(pf.Publications) != want {
			t.Fatalf("%d publications, want %d", len(pf.Publications), want)
		}
	}
	apply(log.data[0])
	check(1)
	apply(log.data[1])
	check(1)
	// The leader proposes the skipped publication again, on what it has.
	now = now.Add(reproposeAfter)
	if _, err := pubs[0].PublishDue(); err != nil || len(log.data) != 3 {
		t.Fatalf("%d proposals, %v", len(log.data), err)
	}
	apply(log.data[2])
	check(2)
}
