package calendar

import (
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendarstep"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// ErrHistoryLost: the store has less than its watermark says was
// answered. Callers refuse to serve until an operator restores the data
// or accepts the loss (AcceptLoss).
var ErrHistoryLost = errors.New("calendar: answered history lost")

// LossError says what the store lacks compared with its watermark.
type LossError struct {
	Had       Mark
	HasStore  bool   // the store has any second
	Found     uint64 // the store's last second, if HasStore
	NoMark    bool   // the watermark file was missing while the store has seconds
	RootDiff  bool   // the store has second Had.Last but another root after it
	PubMissed bool   // the publication of Had.Pub is missing or differs
	// MarkPath names the watermark file in the message, when known.
	MarkPath string
}

func (e *LossError) Error() string {
	found := "the store is empty"
	if e.HasStore {
		found = fmt.Sprintf("the store ends at second %d (%s)", e.Found, utc(e.Found))
	}
	switch {
	case e.NoMark:
		file := "the watermark file"
		if e.MarkPath != "" {
			file += " " + e.MarkPath
		}
		return fmt.Sprintf("%v: %s is missing or empty, so what was answered cannot be checked (%s)", ErrHistoryLost, file, found)
	case e.RootDiff:
		return fmt.Sprintf("%v: the watermark says second %d (%s) was answered with another calendar root than the store has: the store holds a different history", ErrHistoryLost, e.Had.Last, utc(e.Had.Last))
	case e.PubMissed:
		return fmt.Sprintf("%v: the publication of %d (%s) was served but the store lacks it or has another one", ErrHistoryLost, e.Had.Pub, utc(e.Had.Pub))
	}
	return fmt.Sprintf("%v: the watermark says second %d (%s) was answered, %s (%s missing)", ErrHistoryLost,
		e.Had.Last, utc(e.Had.Last), found, missing(e))
}

func missing(e *LossError) string {
	if !e.HasStore {
		return "everything"
	}
	n := e.Had.Last - e.Found
	if n == 1 {
		return "1 second"
	}
	return fmt.Sprintf("%d seconds", n)
}

func (e *LossError) Unwrap() error { return ErrHistoryLost }

func utc(t uint64) string { return time.Unix(int64(t), 0).UTC().Format(time.RFC3339) }

// CheckMark compares the store with a watermark: nil when the store has
// everything the mark says was answered (it may have more: the store is
// written first), else a *LossError.
func (s *Store) CheckMark(m Mark, markFound bool) error {
	first, last, has := s.Head()
	if !markFound {
		if has {
			return &LossError{HasStore: true, Found: last, NoMark: true}
		}
		return nil
	}
	loss := &LossError{Had: m, HasStore: has, Found: last}
	if m.Last != 0 || m.Root != nil {
		if !has || last < m.Last || m.Last < first {
			return loss
		}
		root, err := s.Root(m.Last)
		if err != nil {
			return err
		}
		if !root.Equal(m.Root) {
			loss.RootDiff = true
			return loss
		}
	}
	if m.Pub != 0 {
		rec, err := s.publication(m.Pub)
		if err != nil && !errors.Is(err, pebble.ErrNotFound) {
			return err
		}
		if err != nil || !s.publicationMatches(rec) {
			loss.PubMissed = true
			return loss
		}
	}
	return nil
}

// CheckMarkNoStore is CheckMark for a calendar whose store does not
// exist: only a mark of nothing answered lets a new store be created.
func CheckMarkNoStore(m Mark) error {
	if m.Last != 0 || m.Root != nil || m.Pub != 0 {
		return &LossError{Had: m}
	}
	return nil
}

// publication reads the stored publication record of time t.
func (s *Store) publication(t uint64) (*ksi.PublicationRecord, error) {
	v, err := s.getMeta(pubKey(t))
	if err != nil {
		return nil, err
	}
	e, err := tlv.ReadOne(v)
	if err != nil {
		return nil, fmt.Errorf("%w: publication record %d: %v", ErrCorrupt, t, err)
	}
	return ksi.ParsePublicationRecord(e)
}

// publicationMatches reports whether a publication's hash is the stored
// calendar root at its time.
func (s *Store) publicationMatches(rec *ksi.PublicationRecord) bool {
	root, err := s.Root(rec.Data.Time)
	return err == nil && root.Equal(rec.Data.Hash)
}

// LossRecord is an operator's acceptance of lost history, kept in the
// store for good: what the watermark had, what the store had, and why.
type LossRecord struct {
	AcceptedAt time.Time `json:"accepted_at"`
	Reason     string    `json:"reason"`
	HadLast    uint64    `json:"had_last_second"`
	HadRoot    string    `json:"had_root,omitempty"`
	HadPub     uint64    `json:"had_publication,omitempty"`
	NoMark     bool      `json:"watermark_missing,omitempty"`
	FoundLast  uint64    `json:"found_last_second,omitempty"`
	FoundNone  bool      `json:"found_empty_store,omitempty"`
	// Filled are the seconds appended as empty leaves so that the
	// calendar never again signs a second it had answered.
	FilledFrom uint64 `json:"filled_from,omitempty"`
	FilledTo   uint64 `json:"filled_to,omitempty"`
	// PubFloor: with no watermark, which publications were served is
	// unknown, so none is made again at or before the acceptance.
	PubFloor uint64 `json:"no_publication_at_or_before,omitempty"`
}

// ErrNothingToAccept: AcceptLoss found the store consistent with its mark.
var ErrNothingToAccept = errors.New("calendar: the store has everything its watermark says was answered; nothing to accept")

// AcceptLoss records an operator's acceptance of what CheckMark found
// missing and makes store and watermark agree again: the lost seconds up
// to the mark are appended as empty leaves (the calendar never signs them
// again), the record is stored with the reason, and the mark is reset to
// the store's state. Publications are never made again at or before a
// lost publication's time (Store.publicationFloor). Signatures of the
// lost seconds no longer verify; that is what is accepted.
func AcceptLoss(s *Store, w *Watermark, markFound bool, reason string, now time.Time) (*LossRecord, error) {
	var m Mark
	if markFound {
		m = w.Mark()
	}
	err := s.CheckMark(m, markFound)
	var loss *LossError
	if !errors.As(err, &loss) {
		if err == nil {
			return nil, ErrNothingToAccept
		}
		return nil, err
	}
	rec := &LossRecord{AcceptedAt: now.UTC(), Reason: reason, HadLast: m.Last, HadPub: m.Pub, NoMark: loss.NoMark,
		FoundLast: loss.Found, FoundNone: !loss.HasStore}
	if m.Root != nil {
		rec.HadRoot = hex.EncodeToString(m.Root)
	}
	if loss.NoMark {
		rec.PubFloor = uint64(max(now.Unix(), 0))
	}
	_, last, has := s.Head()
	if !loss.NoMark && m.Last > 0 && (!has || last < m.Last) {
		// The seconds the mark vouches for are filled empty: their
		// answers are lost, but they are never signed again.
		step, err := calendarstep.Second(s.State(), m.Last, nil)
		if err != nil {
			return nil, err
		}
		if _, err := writeStep(s, step); err != nil {
			return nil, err
		}
		rec.FilledFrom, rec.FilledTo = step.From, m.Last
	}
	if err := s.saveLossRecord(rec); err != nil {
		return nil, err
	}
	next := Mark{}
	if _, last, has = s.Head(); has {
		root, err := s.Root(last)
		if err != nil {
			return nil, err
		}
		next.Last, next.Root = last, root
	}
	if pubs, _, err := s.loadPublications(); err == nil && len(pubs) > 0 {
		next.Pub = pubs[len(pubs)-1].Data.Time
	}
	if err := w.reset(next); err != nil {
		return nil, err
	}
	return rec, nil
}

func lossKey(t time.Time) []byte {
	return binary.BigEndian.AppendUint64([]byte{prefixLoss}, uint64(t.UnixNano()))
}

func (s *Store) saveLossRecord(rec *LossRecord) error {
	v, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.db.Set(lossKey(rec.AcceptedAt), v, pebble.Sync); err != nil {
		return fmt.Errorf("calendar: save loss record: %w", err)
	}
	return nil
}

// LossRecords returns every accepted loss, oldest first.
func (s *Store) LossRecords() ([]LossRecord, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixLoss}, UpperBound: []byte{prefixLoss + 1}})
	if err != nil {
		return nil, err
	}
	defer it.Close()
	var out []LossRecord
	for it.First(); it.Valid(); it.Next() {
		var r LossRecord
		if err := json.Unmarshal(it.Value(), &r); err != nil {
			return nil, fmt.Errorf("%w: loss record: %v", ErrCorrupt, err)
		}
		out = append(out, r)
	}
	return out, it.Error()
}

// publicationFloor is the newest publication time that was served and
// then lost: no publication is made at or before it again, since a
// second publication of the same time with another value would
// contradict the first.
func (s *Store) publicationFloor() (uint64, error) {
	recs, err := s.LossRecords()
	if err != nil {
		return 0, err
	}
	var floor uint64
	for _, r := range recs {
		floor = max(floor, r.HadPub, r.PubFloor)
	}
	return floor, nil
}
