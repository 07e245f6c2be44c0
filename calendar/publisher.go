package calendar

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"github.com/cockroachdb/pebble/v2"
	"github.com/smallstep/pkcs7"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// PublicationsSigner signs publications files and names the certificate
// that checks calendar authentication records. A signer that also has
// CertificateRecords (a member of a replicated calendar) names all the
// members' certificates, so that a record signed by any member verifies.
type PublicationsSigner interface {
	SignPublicationsFile(content []byte) ([]byte, error)
	CertificateRecord() ksi.CertificateRecord
}

// memberCertificates is a signer of a replicated calendar, which names
// every member's certificate, its own first.
type memberCertificates interface {
	CertificateRecords() []ksi.CertificateRecord
}

// certificateRecords returns the certificates the publications file carries.
// A replicated calendar's members list them in one order (by id), so
// that every member builds the same file content.
func certificateRecords(s PublicationsSigner) []ksi.CertificateRecord {
	if m, ok := s.(memberCertificates); ok {
		recs := slices.Clone(m.CertificateRecords())
		slices.SortFunc(recs, func(a, b ksi.CertificateRecord) int { return bytes.Compare(a.ID, b.ID) })
		return recs
	}
	return []ksi.CertificateRecord{s.CertificateRecord()}
}

// PublisherConfig configures the publisher.
type PublisherConfig struct {
	Store  *Store
	Signer PublicationsSigner
	// Watermark, when set, records each publication before it is served,
	// and publications are made only of seconds it holds.
	Watermark *Watermark
	// Period between publications. Publication times are multiples of it
	// in POSIX seconds, so a daily period publishes at 00:00:00 UTC.
	Period time.Duration
	// RepositoryURI is written into the file header: where it is served.
	RepositoryURI string
	Now           func() time.Time
	Logger        *slog.Logger
	// Log, when set, makes this the publisher of a member of a replicated
	// calendar: only the leader publishes, by proposing the publication
	// to the log, and every member serves it once the log applies it
	// (Service.Apply, ApplyPublication).
	Log ReplicatedLog
}

// Publisher makes a publication every period and keeps the signed
// publications file (docs/design/formats.md#publications-file) with all publications.
type Publisher struct {
	cfg PublisherConfig

	mu    sync.RWMutex
	pubs  []*ksi.PublicationRecord
	file  []byte
	etag  string
	floor uint64 // no publication at or before this time: one was lost (AcceptLoss)
	// proposed and proposedAt: the publication time this leader last
	// proposed and when, so it proposes it again only after a while.
	proposed   uint64
	proposedAt time.Time
}

// NewPublisher loads the stored publications and publications file.
func NewPublisher(cfg PublisherConfig) (*Publisher, error) {
	if cfg.Store == nil || cfg.Signer == nil {
		return nil, errors.New("calendar: publisher needs a store and a signer")
	}
	if cfg.Period < time.Second {
		return nil, fmt.Errorf("calendar: publication period %s is shorter than a second", cfg.Period)
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Publisher{cfg: cfg}
	pubs, file, err := cfg.Store.loadPublications()
	if err != nil {
		return nil, err
	}
	p.pubs, p.file = pubs, file
	p.etag = etag(file)
	// A publication stored just before a crash, before the watermark took
	// it, is served from now on: the watermark takes it first.
	if w := cfg.Watermark; w != nil && len(pubs) > 0 {
		if err := w.Published(pubs[len(pubs)-1].Data.Time); err != nil {
			return nil, err
		}
	}
	if p.floor, err = cfg.Store.publicationFloor(); err != nil {
		return nil, err
	}
	if err := checkDropped(file, cfg.Signer); err != nil {
		return nil, err
	}
	if file == nil {
		// A calendar without publications still serves a signed file
		// with its certificate, so key-based verification works at once.
		if err := p.rebuild(nil); err != nil {
			return nil, err
		}
	} else if why := staleFile(file, cfg.Signer); why != "" && cfg.Log == nil {
		// After a key rotation: serve the new certificates now, not at
		// the next publication. A replicated calendar's members serve
		// the leader's signature, so theirs wait for it.
		cfg.Logger.Info("re-signing the stored publications file", "why", why)
		if err := p.rebuild(nil); err != nil {
			return nil, err
		}
	}
	return p, nil
}

// File returns the current signed publications file and its ETag.
func (p *Publisher) File() ([]byte, string) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.file, p.etag
}

// Publications returns all publications, oldest first.
func (p *Publisher) Publications() []*ksi.PublicationRecord {
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.pubs
}

// Latest returns the newest publication, or nil.
func (p *Publisher) Latest() *ksi.PublicationRecord {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if len(p.pubs) == 0 {
		return nil
	}
	return p.pubs[len(p.pubs)-1]
}

// Run publishes as periods end until ctx is cancelled.
func (p *Publisher) Run(ctx context.Context) error {
	t := time.NewTicker(200 * time.Millisecond)
	defer t.Stop()
	var failing error // logged once until publishing works again
	for {
		_, err := p.PublishDue()
		switch {
		case err != nil && failing == nil:
			p.cfg.Logger.Error("publication failed; retrying", "err", err)
		case err == nil && failing != nil:
			p.cfg.Logger.Info("publishing again", "after", failing.Error())
		}
		failing = err
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// PublishDue publishes the newest period boundary the calendar has
// reached, if not yet published, and returns the new record (nil if none
// was due). Missed boundaries are not published after the fact.
func (p *Publisher) PublishDue() (*ksi.PublicationRecord, error) {
	if l := p.cfg.Log; l != nil && !l.Leading() {
		return nil, nil // the leader publishes
	}
	first, last, ok := p.cfg.Store.Head()
	if !ok {
		return nil, nil
	}
	if w := p.cfg.Watermark; w != nil {
		last = min(last, w.Mark().Last)
	}
	period := uint64(p.cfg.Period / time.Second)
	b := last / period * period
	if b < first || b <= p.floor {
		return nil, nil
	}
	if l := p.Latest(); l != nil && l.Data.Time >= b {
		return nil, nil
	}
	root, err := p.cfg.Store.Root(b)
	if err != nil {
		return nil, err
	}
	pd := ksi.NewPublishedData(b, root)
	rec, err := ksi.NewPublicationRecord(ksi.TypePubFileRecord, pd,
		[]string{"Tempel publication " + pd.UTC().Format(time.RFC3339)}, nil)
	if err != nil {
		return nil, err
	}
	if p.cfg.Log != nil {
		return nil, p.propose(rec, root)
	}
	if err := p.rebuild(rec); err != nil {
		return nil, err
	}
	p.cfg.Logger.Info("published", "time", pd.UTC().Format(time.RFC3339), "publication", pd.String())
	return rec, nil
}

// content builds the file's content: the header, the certificates and
// the publications with rec added (if not nil).
func (p *Publisher) content(hdr ksi.PublicationsFileHeader, rec *ksi.PublicationRecord) ([]byte, []*ksi.PublicationRecord, error) {
	p.mu.RLock()
	pubs := append([]*ksi.PublicationRecord(nil), p.pubs...)
	p.mu.RUnlock()
	if rec != nil {
		pubs = append(pubs, rec)
	}
	content, err := ksi.BuildPublicationsFileContent(hdr, certificateRecords(p.cfg.Signer), pubs)
	if err != nil {
		return nil, nil, fmt.Errorf("calendar: build publications file: %w", err)
	}
	return content, pubs, nil
}

// rebuild re-signs the file with rec added (if not nil) and stores both in
// one synced batch before serving them.
func (p *Publisher) rebuild(rec *ksi.PublicationRecord) error {
	hdr := ksi.PublicationsFileHeader{Version: 1, CreationTime: uint64(p.cfg.Now().Unix()), RepositoryURI: p.cfg.RepositoryURI}
	content, pubs, err := p.content(hdr, rec)
	if err != nil {
		return err
	}
	sig, err := p.cfg.Signer.SignPublicationsFile(content)
	if err != nil {
		return fmt.Errorf("calendar: sign publications file: %w", err)
	}
	return p.store(rec, pubs, content, sig)
}

// store saves rec (if not nil) and the signed file in one synced batch,
// moves the watermark, then serves them.
func (p *Publisher) store(rec *ksi.PublicationRecord, pubs []*ksi.PublicationRecord, content, sig []byte) error {
	file, err := ksi.AppendPublicationsFileSignature(content, sig)
	if err != nil {
		return err
	}
	if err := p.cfg.Store.savePublication(rec, file); err != nil {
		return err
	}
	if w := p.cfg.Watermark; w != nil && rec != nil {
		if err := w.Published(rec.Data.Time); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.pubs, p.file, p.etag = pubs, file, etag(file)
	p.mu.Unlock()
	return nil
}

// signs checks that sig, a detached PKCS#7 signature, is over content
// (its digest and signature; the chain is the verifiers' business). The
// check depends only on the two, so every member decides alike.
func signs(sig, content []byte) error {
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		return fmt.Errorf("calendar: publications file signature: %w", err)
	}
	p7.Content = content
	if err := p7.Verify(); err != nil {
		return fmt.Errorf("calendar: publications file signature: %w", err)
	}
	return nil
}

// reproposeAfter is how long a leader waits for its publication to be
// applied before proposing it again.
const reproposeAfter = 5 * time.Second

// propose signs the file with rec added and proposes the publication to
// the log; it is stored and served when the log applies it.
func (p *Publisher) propose(rec *ksi.PublicationRecord, root ksi.Imprint) error {
	now := p.cfg.Now()
	if p.proposed == rec.Data.Time && now.Sub(p.proposedAt) < reproposeAfter {
		return nil
	}
	hdr := ksi.PublicationsFileHeader{Version: 1, CreationTime: uint64(now.Unix()), RepositoryURI: p.cfg.RepositoryURI}
	content, _, err := p.content(hdr, rec)
	if err != nil {
		return err
	}
	sig, err := p.cfg.Signer.SignPublicationsFile(content)
	if err != nil {
		return fmt.Errorf("calendar: sign publications file: %w", err)
	}
	e := PublicationEntry{Time: rec.Data.Time, Root: root, CreationTime: hdr.CreationTime, RepositoryURI: hdr.RepositoryURI,
		Record: rec.Raw, Signature: sig}
	data, err := e.Encode(nil)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), DefaultCommitTimeout)
	defer cancel()
	if err := p.cfg.Log.Propose(ctx, data); err != nil {
		return fmt.Errorf("calendar: propose the publication of %d: %w", rec.Data.Time, err)
	}
	p.proposed, p.proposedAt = rec.Data.Time, now
	return nil
}

// ApplyPublication stores and serves a publication the log committed,
// the same on every member: the record must be of a second this member
// holds with the same root (or its calendar differs from the leader's,
// and it stops), and the file is rebuilt from this member's publications
// with the leader's header and signature, so its bytes are the leader's.
// A publication at or before the newest one changes nothing.
func (p *Publisher) ApplyPublication(e *PublicationEntry) error {
	if l := p.Latest(); l != nil && l.Data.Time >= e.Time {
		return nil
	}
	elem, err := tlv.ReadOne(e.Record)
	if err != nil {
		return fmt.Errorf("%w: publication record: %v", ErrBadEntry, err)
	}
	rec, err := ksi.ParsePublicationRecord(elem)
	if err != nil {
		return fmt.Errorf("%w: publication record: %v", ErrBadEntry, err)
	}
	if rec.Data.Time != e.Time || !rec.Data.Hash.Equal(e.Root) {
		return fmt.Errorf("%w: the publication record is not of the entry's time and root", ErrBadEntry)
	}
	root, err := p.cfg.Store.Root(e.Time)
	if err != nil {
		return fmt.Errorf("calendar: publication of %d: %w", e.Time, err)
	}
	if !root.Equal(e.Root) {
		return fmt.Errorf("%w: the leader published root %s for %d, this member's is %s", ErrHistoryLost, e.Root, e.Time, root)
	}
	hdr := ksi.PublicationsFileHeader{Version: 1, CreationTime: e.CreationTime, RepositoryURI: e.RepositoryURI}
	content, pubs, err := p.content(hdr, rec)
	if err != nil {
		return err
	}
	if err := signs(e.Signature, content); err != nil {
		// The leader built the content on other publications (it proposed
		// this one before its previous one was applied): serving its
		// signature here would serve a file nobody can verify. Every
		// member skips it alike; the leader proposes it again.
		p.cfg.Logger.Warn("publication entry skipped: its signature is not over this member's file", "time", e.Time, "err", err)
		return nil
	}
	if err := p.store(rec, pubs, content, e.Signature); err != nil {
		return err
	}
	p.cfg.Logger.Info("published", "time", rec.Data.UTC().Format(time.RFC3339), "publication", rec.Data.String())
	return nil
}

func etag(file []byte) string {
	if file == nil {
		return ""
	}
	s := sha256.Sum256(file)
	return `"` + hex.EncodeToString(s[:12]) + `"`
}

var blobPubFile = []byte("bpubfile")

func pubKey(t uint64) []byte { return binary.BigEndian.AppendUint64([]byte{prefixPub}, t) }

// savePublication stores a publication record (if any) and the signed
// file in one synced batch.
func (s *Store) savePublication(rec *ksi.PublicationRecord, file []byte) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return fmt.Errorf("%w: %v", ErrFailed, s.failed)
	}
	defer s.recoverWriteFailure(&err)
	b := s.db.NewBatch()
	defer b.Close()
	if rec != nil {
		b.Set(pubKey(rec.Data.Time), rec.Raw, nil)
	}
	b.Set(blobPubFile, file, nil)
	return s.commitLocked(b, true, "save publication")
}

// loadPublications reads every stored publication (oldest first) and the
// signed file.
func (s *Store) loadPublications() ([]*ksi.PublicationRecord, []byte, error) {
	it, err := s.db.NewIter(&pebble.IterOptions{LowerBound: []byte{prefixPub}, UpperBound: []byte{prefixPub + 1}})
	if err != nil {
		return nil, nil, err
	}
	defer it.Close()
	var pubs []*ksi.PublicationRecord
	for it.First(); it.Valid(); it.Next() {
		raw := append([]byte(nil), it.Value()...)
		e, err := tlv.ReadOne(raw)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: publication record: %v", ErrCorrupt, err)
		}
		rec, err := ksi.ParsePublicationRecord(e)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %v", ErrCorrupt, err)
		}
		pubs = append(pubs, rec)
	}
	file, err := s.getMeta(blobPubFile)
	if errors.Is(err, pebble.ErrNotFound) {
		return pubs, nil, nil
	}
	return pubs, file, err
}
