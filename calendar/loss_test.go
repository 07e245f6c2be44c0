package calendar

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/ksi"
)

const lossBase = 1_800_000_000

// storeWith opens a store in a new directory holding seconds from..to
// (leafFor(t) each), none when to < from.
func storeWith(t *testing.T, from, to uint64) *Store {
	t.Helper()
	st, err := OpenStore(t.TempDir(), StoreOptions{Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	appendLeaves(t, st, from, to)
	return st
}

func appendLeaves(t *testing.T, st *Store, from, to uint64) {
	t.Helper()
	if to < from {
		return
	}
	leaves := make([]ksi.Imprint, 0, to-from+1)
	for s := from; s <= to; s++ {
		leaves = append(leaves, leafFor(s))
	}
	if _, err := st.AppendRange(from, leaves, true); err != nil {
		t.Fatal(err)
	}
}

// markOf is the mark a calendar writes after answering second last of st.
func markOf(t *testing.T, st *Store, last, pub uint64) Mark {
	t.Helper()
	return Mark{Last: last, Root: mustRoot(t, st, last), Pub: pub}
}

func lossOf(t *testing.T, err error) *LossError {
	t.Helper()
	var loss *LossError
	if !errors.As(err, &loss) || !errors.Is(err, ErrHistoryLost) {
		t.Fatalf("got %v, want a *LossError", err)
	}
	if strings.Contains(err.Error(), "\n") {
		t.Fatalf("message of more than one line: %q", err)
	}
	return loss
}

func TestCheckMark(t *testing.T) {
	full := storeWith(t, lossBase, lossBase+20)
	same := markOf(t, full, lossBase+20, 0)
	empty := storeWith(t, 1, 0)

	// Consistent: the store has everything the mark says, or more.
	for name, tc := range map[string]struct {
		st    *Store
		m     Mark
		found bool
	}{
		"no mark, empty store":   {empty, Mark{}, false},
		"zero mark, empty store": {empty, Mark{}, true},
		"zero mark, seconds":     {full, Mark{}, true},
		"mark at the last":       {full, same, true},
		"store ahead of mark":    {full, markOf(t, full, lossBase+15, 0), true},
	} {
		if err := tc.st.CheckMark(tc.m, tc.found); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}

	// No mark while the store has seconds: what was answered is unknown.
	loss := lossOf(t, full.CheckMark(Mark{}, false))
	if !loss.NoMark || !strings.Contains(loss.Error(), "watermark file is missing or empty") {
		t.Errorf("no mark: %+v %v", loss, loss)
	}

	// The store ends before the mark: says both seconds and how many.
	behind := storeWith(t, lossBase, lossBase+17)
	err := behind.CheckMark(same, true)
	loss = lossOf(t, err)
	if loss.Found != lossBase+17 || !loss.HasStore || loss.RootDiff || loss.NoMark {
		t.Errorf("behind: %+v", loss)
	}
	for _, want := range []string{"second 1800000020", "ends at second 1800000017", "(3 seconds missing)"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("behind: %q lacks %q", err, want)
		}
	}
	if err := storeWith(t, lossBase, lossBase+19).CheckMark(same, true); !strings.Contains(err.Error(), "(1 second missing)") {
		t.Errorf("one behind: %v", err)
	}

	// An empty store under a mark: everything is missing.
	err = empty.CheckMark(same, true)
	if loss = lossOf(t, err); loss.HasStore || !strings.Contains(err.Error(), "the store is empty (everything missing)") {
		t.Errorf("empty: %+v %v", loss, err)
	}

	// No store at all: only a mark of nothing answered lets one be made.
	if err := CheckMarkNoStore(Mark{}); err != nil {
		t.Errorf("no store, zero mark: %v", err)
	}
	if loss = lossOf(t, CheckMarkNoStore(same)); loss.HasStore {
		t.Errorf("no store: %+v", loss)
	}

	// The store starts after the marked second.
	if loss = lossOf(t, storeWith(t, lossBase+30, lossBase+40).CheckMark(same, true)); loss.RootDiff {
		t.Errorf("starts after the mark: %+v", loss)
	}

	// Another history: the second is there with another root.
	other := storeWith(t, lossBase, lossBase+19)
	if _, err := other.Append(lossBase+20, EmptyLeaf); err != nil {
		t.Fatal(err)
	}
	err = other.CheckMark(same, true)
	if loss = lossOf(t, err); !loss.RootDiff || !strings.Contains(err.Error(), "different history") {
		t.Errorf("another root: %+v %v", loss, err)
	}

	// A served publication the store lacks, or has with another value.
	withPub := same
	withPub.Pub = lossBase + 10
	if loss = lossOf(t, full.CheckMark(withPub, true)); !loss.PubMissed {
		t.Errorf("publication missing: %+v", loss)
	}
	pd := ksi.NewPublishedData(lossBase+10, leafFor(1))
	rec, err := ksi.NewPublicationRecord(ksi.TypePubFileRecord, pd, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := full.savePublication(rec, []byte("file")); err != nil {
		t.Fatal(err)
	}
	if loss = lossOf(t, full.CheckMark(withPub, true)); !loss.PubMissed {
		t.Errorf("publication with another value: %+v", loss)
	}
	pd = ksi.NewPublishedData(lossBase+10, mustRoot(t, full, lossBase+10))
	if rec, err = ksi.NewPublicationRecord(ksi.TypePubFileRecord, pd, nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := full.savePublication(rec, []byte("file")); err != nil {
		t.Fatal(err)
	}
	if err := full.CheckMark(withPub, true); err != nil {
		t.Errorf("publication present: %v", err)
	}
}

func newMark(t *testing.T, m Mark) *Watermark {
	t.Helper()
	w, _ := openMark(t, filepath.Join(t.TempDir(), "watermark"), true)
	if err := w.reset(m); err != nil {
		t.Fatal(err)
	}
	return w
}

var acceptedAt = time.Unix(lossBase+1000, 0)

// accepted checks what AcceptLoss leaves: the store consistent with the
// new mark, a full check clean, a second acceptance with nothing to do.
func accepted(t *testing.T, st *Store, w *Watermark) {
	t.Helper()
	if err := st.CheckMark(w.Mark(), true); err != nil {
		t.Fatalf("after AcceptLoss: %v", err)
	}
	if err := st.Check(); err != nil {
		t.Fatalf("after AcceptLoss: %v", err)
	}
	if _, err := AcceptLoss(st, w, true, "again", acceptedAt.Add(time.Second)); !errors.Is(err, ErrNothingToAccept) {
		t.Fatalf("second AcceptLoss: %v, want ErrNothingToAccept", err)
	}
}

func TestAcceptLoss(t *testing.T) {
	t.Run("nothing lost", func(t *testing.T) {
		st := storeWith(t, lossBase, lossBase+5)
		w := newMark(t, markOf(t, st, lossBase+5, 0))
		if _, err := AcceptLoss(st, w, true, "x", acceptedAt); !errors.Is(err, ErrNothingToAccept) {
			t.Fatalf("%v, want ErrNothingToAccept", err)
		}
		if recs, _ := st.LossRecords(); len(recs) != 0 {
			t.Fatalf("%d loss records for nothing", len(recs))
		}
	})

	t.Run("tail lost", func(t *testing.T) {
		had := storeWith(t, lossBase, lossBase+20)
		m := markOf(t, had, lossBase+20, 0)
		st := storeWith(t, lossBase, lossBase+12)
		before := mustRoot(t, st, lossBase+12)
		w := newMark(t, m)
		rec, err := AcceptLoss(st, w, true, "ticket 1", acceptedAt)
		if err != nil {
			t.Fatal(err)
		}
		if rec.HadLast != lossBase+20 || rec.FoundLast != lossBase+12 || rec.FilledFrom != lossBase+13 ||
			rec.FilledTo != lossBase+20 || rec.Reason != "ticket 1" || rec.NoMark || rec.FoundNone {
			t.Fatalf("record %+v", rec)
		}
		// The lost seconds are empty leaves: never signed again.
		for s := uint64(lossBase + 13); s <= lossBase+20; s++ {
			if l, err := st.Leaf(s); err != nil || !l.Equal(EmptyLeaf) {
				t.Fatalf("second %d: %v %v, want an empty leaf", s, l, err)
			}
		}
		if !mustRoot(t, st, lossBase+12).Equal(before) {
			t.Fatal("the history kept changed")
		}
		if got := w.Mark(); got.Last != lossBase+20 || !got.Root.Equal(mustRoot(t, st, lossBase+20)) {
			t.Fatalf("mark %+v", got)
		}
		recs, err := st.LossRecords()
		if err != nil || len(recs) != 1 || recs[0].FilledTo != lossBase+20 || !recs[0].AcceptedAt.Equal(acceptedAt) {
			t.Fatalf("stored records %+v %v", recs, err)
		}
		accepted(t, st, w)
	})

	t.Run("gap longer than a batch", func(t *testing.T) {
		st := storeWith(t, lossBase, lossBase+5)
		end := uint64(lossBase + 5 + fillChunk + 7)
		w := newMark(t, Mark{Last: end, Root: leafFor(end)})
		rec, err := AcceptLoss(st, w, true, "down for long", acceptedAt)
		if err != nil {
			t.Fatal(err)
		}
		if rec.FilledFrom != lossBase+6 || rec.FilledTo != end {
			t.Fatalf("record %+v", rec)
		}
		for _, s := range []uint64{lossBase + 6, lossBase + 5 + fillChunk, lossBase + 6 + fillChunk, end} {
			if l, err := st.Leaf(s); err != nil || !l.Equal(EmptyLeaf) {
				t.Fatalf("second %d: %v %v, want an empty leaf", s, l, err)
			}
		}
		accepted(t, st, w)
	})

	t.Run("empty store", func(t *testing.T) {
		had := storeWith(t, lossBase, lossBase+20)
		st := storeWith(t, 1, 0)
		w := newMark(t, markOf(t, had, lossBase+20, 0))
		rec, err := AcceptLoss(st, w, true, "disk replaced", acceptedAt)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.FoundNone || rec.FilledFrom != lossBase+20 || rec.FilledTo != lossBase+20 {
			t.Fatalf("record %+v", rec)
		}
		// The calendar starts again at the marked second: every earlier
		// one is before its first and can never be appended.
		if first, last, _ := st.Head(); first != lossBase+20 || last != lossBase+20 {
			t.Fatalf("store %d..%d", first, last)
		}
		if _, err := st.Append(lossBase+5, leafFor(5)); !errors.Is(err, ErrOutOfOrder) {
			t.Fatalf("appended a lost second: %v", err)
		}
		accepted(t, st, w)
	})

	t.Run("another history", func(t *testing.T) {
		// The store has the marked second and more, but the mark was
		// written with another root: a copy of another calendar.
		st := storeWith(t, lossBase, lossBase+25)
		w := newMark(t, Mark{Last: lossBase + 20, Root: leafFor(7)})
		rec, err := AcceptLoss(st, w, true, "restored another node's copy", acceptedAt)
		if err != nil {
			t.Fatal(err)
		}
		if rec.FilledTo != 0 {
			t.Fatalf("filled %d..%d in a store that has the seconds", rec.FilledFrom, rec.FilledTo)
		}
		if got := w.Mark(); got.Last != lossBase+25 || !got.Root.Equal(mustRoot(t, st, lossBase+25)) {
			t.Fatalf("mark %+v, want the store's head", got)
		}
		accepted(t, st, w)
	})

	t.Run("no watermark", func(t *testing.T) {
		st := storeWith(t, lossBase, lossBase+8)
		w, _ := openMark(t, filepath.Join(t.TempDir(), "watermark"), true)
		rec, err := AcceptLoss(st, w, false, "watermark deleted", acceptedAt)
		if err != nil {
			t.Fatal(err)
		}
		if !rec.NoMark || rec.FilledTo != 0 || rec.FoundLast != lossBase+8 {
			t.Fatalf("record %+v", rec)
		}
		accepted(t, st, w)
	})

	t.Run("no watermark, empty store", func(t *testing.T) {
		st := storeWith(t, 1, 0)
		w, _ := openMark(t, filepath.Join(t.TempDir(), "watermark"), true)
		if _, err := AcceptLoss(st, w, false, "x", acceptedAt); !errors.Is(err, ErrNothingToAccept) {
			t.Fatalf("%v, want ErrNothingToAccept", err)
		}
	})
}

// TestAcceptLossPublicationFloor: a publication that was served and then
// lost with the seconds under it is never made again: after the lost
// seconds are filled with empty leaves, the root at its time differs,
// and a second publication of the same time would contradict the first.
func TestAcceptLossPublicationFloor(t *testing.T) {
	keys, err := pki.Init(filepath.Join(t.TempDir(), "keys"), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const period = 10
	now := time.Unix(lossBase+100, 0)
	newPub := func(st *Store, w *Watermark) *Publisher {
		p, err := NewPublisher(PublisherConfig{Store: st, Signer: keys, Watermark: w, Period: period * time.Second,
			Now: func() time.Time { return now }, Logger: discardLogger()})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The calendar that was: seconds …000 to …025, publication of …020.
	had := storeWith(t, lossBase, lossBase+25)
	w := newMark(t, markOf(t, had, lossBase+25, 0))
	rec, err := newPub(had, w).PublishDue()
	if err != nil || rec == nil || rec.Data.Time != lossBase+20 {
		t.Fatalf("publication: %v %+v", err, rec)
	}
	if w.Mark().Pub != lossBase+20 {
		t.Fatalf("watermark publication %d, want %d", w.Mark().Pub, lossBase+20)
	}
	served := rec.Data.Hash

	// What is left: seconds up to …014, before the publication.
	st := storeWith(t, lossBase, lossBase+14)
	lr, err := AcceptLoss(st, w, true, "WAL lost", acceptedAt)
	if err != nil {
		t.Fatal(err)
	}
	if lr.HadPub != lossBase+20 {
		t.Fatalf("record %+v, want the lost publication", lr)
	}
	if root := mustRoot(t, st, lossBase+20); root.Equal(served) {
		t.Fatal("test premise: the root at the lost publication should differ now")
	}
	p := newPub(st, w)
	if got, err := p.PublishDue(); err != nil || got != nil {
		t.Fatalf("published %+v (%v) at or before a lost publication", got, err)
	}
	appendLeaves(t, st, lossBase+26, lossBase+29)
	if err := w.Answered(lossBase+29, mustRoot(t, st, lossBase+29)); err != nil {
		t.Fatal(err)
	}
	if got, _ := p.PublishDue(); got != nil {
		t.Fatalf("published %d, not after the lost publication", got.Data.Time)
	}
	// The next boundary after it is published as usual.
	appendLeaves(t, st, lossBase+30, lossBase+31)
	if err := w.Answered(lossBase+31, mustRoot(t, st, lossBase+31)); err != nil {
		t.Fatal(err)
	}
	if got, err := p.PublishDue(); err != nil || got == nil || got.Data.Time != lossBase+30 {
		t.Fatalf("next publication: %+v %v, want %d", got, err, lossBase+30)
	}
	// And after a restart the floor still holds.
	if got, _ := newPub(st, w).PublishDue(); got != nil {
		t.Fatalf("published %d again after a restart", got.Data.Time)
	}
	for _, pr := range newPub(st, w).Publications() {
		if pr.Data.Time == lossBase+20 {
			t.Fatal("the lost publication is back with another value")
		}
	}
}

// TestPublisherMarksStoredPublication: a publication stored just before a
// crash, before the watermark recorded it, is recorded when a restarted
// publisher loads it, before it serves it again: a store that later
// loses it is then refused.
func TestPublisherMarksStoredPublication(t *testing.T) {
	keys, err := pki.Init(filepath.Join(t.TempDir(), "keys"), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	st := storeWith(t, lossBase, lossBase+12)
	pd := ksi.NewPublishedData(lossBase+10, mustRoot(t, st, lossBase+10))
	rec, err := ksi.NewPublicationRecord(ksi.TypePubFileRecord, pd, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.savePublication(rec, []byte("file")); err != nil {
		t.Fatal(err)
	}
	w := newMark(t, markOf(t, st, lossBase+12, 0)) // the crash came before Published
	p, err := NewPublisher(PublisherConfig{Store: st, Signer: keys, Watermark: w, Period: 10 * time.Second, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Publications()) != 1 || w.Mark().Pub != lossBase+10 {
		t.Fatalf("serving %d publications with the watermark at publication %d, want %d", len(p.Publications()), w.Mark().Pub, lossBase+10)
	}
}

// TestAcceptLossNoMarkPublicationFloor: with the watermark gone, which
// publications were served is unknown; the newest boundary the calendar
// reaches after the acceptance may be one that was published before the
// store lost its tail, so no publication at or before the acceptance is
// made again.
func TestAcceptLossNoMarkPublicationFloor(t *testing.T) {
	keys, err := pki.Init(filepath.Join(t.TempDir(), "keys"), pki.InitOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// Seconds up to …014 survive; …020 had been published (lost with the
	// watermark). The operator accepts at …025.
	st := storeWith(t, lossBase, lossBase+14)
	w, _ := openMark(t, filepath.Join(t.TempDir(), "watermark"), true)
	rec, err := AcceptLoss(st, w, false, "watermark and WAL lost", time.Unix(lossBase+25, 0))
	if err != nil {
		t.Fatal(err)
	}
	if rec.PubFloor != lossBase+25 {
		t.Fatalf("record %+v, want no publication at or before %d", rec, lossBase+25)
	}
	// The calendar goes on: the seconds missed are empty leaves.
	appendLeaves(t, st, lossBase+15, lossBase+26)
	if err := w.Answered(lossBase+26, mustRoot(t, st, lossBase+26)); err != nil {
		t.Fatal(err)
	}
	p, err := NewPublisher(PublisherConfig{Store: st, Signer: keys, Watermark: w, Period: 10 * time.Second,
		Now: func() time.Time { return time.Unix(lossBase+27, 0) }, Logger: discardLogger()})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p.PublishDue(); err != nil || got != nil {
		t.Fatalf("published %+v (%v) at or before the acceptance", got, err)
	}
	appendLeaves(t, st, lossBase+27, lossBase+30)
	if err := w.Answered(lossBase+30, mustRoot(t, st, lossBase+30)); err != nil {
		t.Fatal(err)
	}
	if got, err := p.PublishDue(); err != nil || got == nil || got.Data.Time != lossBase+30 {
		t.Fatalf("next publication: %+v %v, want %d", got, err, lossBase+30)
	}
}
