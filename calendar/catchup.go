package calendar

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/cockroachdb/pebble/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/calendartree"
	"github.com/tempel-ksi/tempel/ksi/tlv"
)

// A member of a replicated calendar that falls behind the log's
// compaction (down for longer than the log keeps, or wiped) is sent the
// log's snapshot: a descriptor of the calendar as of an index (first and
// last second, the root after the last, and what the publications file
// was built from). It fetches the seconds it lacks from a peer, leaves
// only, and rebuilds the tree itself; the root it computes must be the
// descriptor's, which the leader committed, so a peer cannot make it
// hold other seconds. Publications come the same way: the peer's records
// up to the descriptor's newest, each checked against the member's own
// calendar, and the file rebuilt from them with the header and signature
// the descriptor carries, byte-identical to every member's.

// Peers is where a restoring member fetches from (raftnode.Fetcher).
type Peers interface {
	// Peers lists the other members, the leader first.
	Peers() []uint64
	// Fetch sends req to member id's ServeFetch and passes each part of
	// its answer to recv.
	Fetch(ctx context.Context, id uint64, req []byte, recv func(part []byte) error) error
}

// Fetch requests: the leaves of seconds from..to, or the publication
// records up to a time.
const (
	fetchLeaves       = 'L'
	fetchPublications = 'P'
	leavesHeader      = 'H'
)

// fetchPartLeaves is how many leaves go in one part of an answer (about
// 540 KiB), below the raft transport's message limit.
const fetchPartLeaves = 16384

// A restoring member goes through its peers in rounds until one gives it
// what it lacks, pausing between rounds from fetchRetry, doubled each
// time up to fetchRetryMax; it stops only when every peer's calendar
// conflicts with its own or the cluster's, or when the member is
// stopped. A peer that sends nothing for fetchStall is given up on.
// Variables for the tests.
var (
	fetchRetry    = 500 * time.Millisecond
	fetchRetryMax = 30 * time.Second
	fetchStall    = 30 * time.Second
)

// errConflict marks a peer's answer that contradicts the member's
// answered calendar or the cluster's snapshot: the peer is not trusted
// for this restore, and what it sent is dropped.
var errConflict = errors.New("calendar: the peer's calendar conflicts")

// Bounds on what a descriptor may carry.
const (
	maxSnapshotURI       = 4096
	maxSnapshotSignature = 256 << 10
	maxSnapshotCerts     = 64
	maxSnapshotCert      = 16 << 10
)

// snapshotDesc is the data of a calendar snapshot.
type snapshotDesc struct {
	first, last uint64
	root        ksi.Imprint
	pubs        *pubSnapshot // nil: no publication yet (or an older snapshot)
	// legacy: written before snapshots carried the publications, so
	// whether there were any is unknown.
	legacy bool
}

// pubSnapshot is what the publications file was built from: its
// publications (count, the newest's time), its header, its certificate
// records (as they were then: a member restoring with another list of
// members' certificates still rebuilds the same file) and its signature.
type pubSnapshot struct {
	count, latest uint64
	creationTime  uint64
	uri           string
	certs         [][]byte // certificate record TLVs, in the file's order
	signature     []byte
}

// encode writes first, last and root (the whole descriptor of snapshots
// taken before publications travelled in them), then the publications:
//
//	first(8) last(8) root(33) uvarint count [latest(8) creation(8) uvarint len uri,
//	    uvarint certs × (uvarint len certificate record), uvarint len signature]
func (d *snapshotDesc) encode() []byte {
	b := binary.BigEndian.AppendUint64(nil, d.first)
	b = binary.BigEndian.AppendUint64(b, d.last)
	b = append(b, d.root...)
	if d.pubs == nil {
		return binary.AppendUvarint(b, 0)
	}
	p := d.pubs
	b = binary.AppendUvarint(b, p.count)
	b = binary.BigEndian.AppendUint64(b, p.latest)
	b = binary.BigEndian.AppendUint64(b, p.creationTime)
	b = binary.AppendUvarint(b, uint64(len(p.uri)))
	b = append(b, p.uri...)
	b = binary.AppendUvarint(b, uint64(len(p.certs)))
	for _, c := range p.certs {
		b = binary.AppendUvarint(b, uint64(len(c)))
		b = append(b, c...)
	}
	b = binary.AppendUvarint(b, uint64(len(p.signature)))
	return append(b, p.signature...)
}

func decodeSnapshotDesc(b []byte) (*snapshotDesc, error) {
	bad := func(what string) error { return fmt.Errorf("%w: calendar snapshot: %s", ErrBadEntry, what) }
	if len(b) < snapshotLen {
		return nil, bad(fmt.Sprintf("%d bytes", len(b)))
	}
	d := &snapshotDesc{first: binary.BigEndian.Uint64(b), last: binary.BigEndian.Uint64(b[8:]), root: ksi.Imprint(bytes.Clone(b[16:snapshotLen]))}
	if d.root.Alg() != calendarAlg || d.last < d.first {
		return nil, bad("not a calendar's first, last and root")
	}
	b = b[snapshotLen:]
	if len(b) == 0 {
		d.legacy = true
		return d, nil
	}
	uv := func(what string, limit uint64) (uint64, error) {
		v, n := binary.Uvarint(b)
		if n <= 0 || v > limit {
			return 0, bad(what)
		}
		b = b[n:]
		return v, nil
	}
	u64 := func(what string) (uint64, error) {
		if len(b) < 8 {
			return 0, bad(what)
		}
		v := binary.BigEndian.Uint64(b)
		b = b[8:]
		return v, nil
	}
	count, err := uv("publication count", d.last-d.first+1)
	switch {
	case err != nil:
		return nil, err
	case count == 0 && len(b) > 0:
		return nil, bad("bytes after the descriptor")
	case count == 0:
		return d, nil
	}
	p := &pubSnapshot{count: count}
	if p.latest, err = u64("newest publication"); err != nil {
		return nil, err
	}
	if p.creationTime, err = u64("file creation time"); err != nil {
		return nil, err
	}
	field := func(what string, limit uint64) ([]byte, error) {
		n, err := uv(what, limit)
		if err != nil || n > uint64(len(b)) {
			return nil, bad(what)
		}
		v := b[:n]
		b = b[n:]
		return v, nil
	}
	uri, err := field("repository URI", maxSnapshotURI)
	if err != nil {
		return nil, err
	}
	ncerts, err := uv("certificate count", maxSnapshotCerts)
	if err != nil {
		return nil, err
	}
	for range ncerts {
		c, err := field("certificate record", maxSnapshotCert)
		if err != nil {
			return nil, err
		}
		if e, err := tlv.ReadOne(c); err != nil || e.Type != ksi.TypePubFileCert {
			return nil, bad("not a certificate record")
		}
		p.certs = append(p.certs, bytes.Clone(c))
	}
	sig, err := field("file signature", maxSnapshotSignature)
	if err != nil {
		return nil, err
	}
	p.uri, p.signature = string(uri), bytes.Clone(sig)
	if len(b) > 0 || p.latest < d.first || p.latest > d.last {
		return nil, bad("publications not of the calendar's seconds")
	}
	d.pubs = p
	return d, nil
}

// RestoreFrom takes the snapshot as of log index in place of the entries
// up to it. A member that lacks some of its seconds fetches their leaves
// from peers (the leader first) and its calendar must then end on the
// snapshot's root; a member that lacks publications fetches the records
// and rebuilds the same file. What a peer sent that contradicts the
// snapshot is dropped and another peer tried; the member stops
// (ErrHistoryLost) only when its own answered calendar or publications
// differ from the cluster's. It goes on trying unreachable peers until
// ctx ends (the member is stopped); a restart resumes with what arrived.
func (s *Service) RestoreFrom(ctx context.Context, index uint64, data []byte, peers Peers) error {
	if len(data) == 0 {
		return nil
	}
	d, err := decodeSnapshotDesc(data)
	if err != nil {
		return err
	}
	st := s.cfg.Store
	first, have, ok := st.Head()
	if ok && first != d.first {
		return fmt.Errorf("%w: the cluster's calendar starts at %d, this member's at %d", ErrHistoryLost, d.first, first)
	}
	fetched := !ok || have < d.last
	if fetched {
		switch {
		case peers == nil:
			return fmt.Errorf("calendar: snapshot at entry %d holds seconds up to %d; this member has %d and no peer to fetch them from", index, d.last, have)
		case d.legacy:
			// Its publications are unknown: restoring from it could
			// leave this member without some, for good.
			return fmt.Errorf("calendar: the cluster's snapshot at entry %d was written by an older Tempel and does not say which publications go with it; "+
				"the leader writes a new one every --raft-snapshot-every entries: start this member again after that", index)
		}
		if err := s.fetchSeconds(ctx, d, peers); err != nil {
			return fmt.Errorf("calendar: restore the snapshot at entry %d: %w", index, err)
		}
	}
	root, err := st.Root(d.last)
	if err != nil {
		return err
	}
	if !root.Equal(d.root) {
		return fmt.Errorf("%w: the cluster's root after %d is %s, this member's is %s", ErrHistoryLost, d.last, d.root, root)
	}
	restored, err := s.restorePublications(ctx, d, peers)
	if err != nil {
		return fmt.Errorf("calendar: restore the snapshot at entry %d: %w", index, err)
	}
	if fetched || restored {
		// Only now is the member as of index: a crash before this
		// restores the snapshot again, fetching what is still missing.
		if err := st.markApplied(index); err != nil {
			return err
		}
	}
	if w := s.cfg.Watermark; w != nil {
		if err := w.Answered(d.last, root); err != nil {
			return err
		}
	}
	s.setClosed(d.last)
	return nil
}

// fromPeers runs fetch with each peer in turn (the leader first), in
// rounds with growing pauses, until one succeeds. A peer that sends
// nothing for fetchStall is given up on. An answer that conflicts
// (errConflict) is the peer's fault unless every peer's answer in a
// round conflicts: then the member's own history is the odd one out and
// the round's errors are returned as ErrHistoryLost. A failed local
// store ends it at once.
func (s *Service) fromPeers(ctx context.Context, peers Peers, what string, fetch func(ctx context.Context, id uint64, alive func()) error) error {
	pause := fetchRetry
	for {
		ids := peers.Peers()
		var errs []error
		conflicts := 0
		for _, id := range ids {
			err := stallGuard(ctx, func(ctx context.Context, alive func()) error { return fetch(ctx, id, alive) })
			if err == nil {
				return nil
			}
			if errors.Is(err, ErrFailed) || errors.Is(err, ErrHistoryLost) || ctx.Err() != nil {
				return err
			}
			if errors.Is(err, errConflict) {
				conflicts++
			}
			s.cfg.Logger.Warn("fetching from a peer failed; trying another", "what", what, "peer", id, "err", err)
			errs = append(errs, fmt.Errorf("member %d: %w", id, err))
		}
		switch {
		case len(ids) == 0:
			return fmt.Errorf("no peer to fetch %s from", what)
		case conflicts == len(ids):
			return fmt.Errorf("%w: every peer's %s conflicts with this member's: %w", ErrHistoryLost, what, errors.Join(errs...))
		}
		s.cfg.Logger.Warn("no peer gave "+what+"; trying again", "in", pause, "err", errors.Join(errs...))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
		pause = min(2*pause, fetchRetryMax)
	}
}

// stallGuard runs f with a context that ends when f has not called
// alive for fetchStall.
func stallGuard(ctx context.Context, f func(ctx context.Context, alive func()) error) error {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	errStalled := fmt.Errorf("calendar: the peer sent nothing for %s", fetchStall)
	timer := time.AfterFunc(fetchStall, func() { cancel(errStalled) })
	defer timer.Stop()
	err := f(ctx, func() { timer.Reset(fetchStall) })
	if context.Cause(ctx) == errStalled {
		return errStalled
	}
	return err
}

// fetchSeconds appends the seconds after the member's last up to d.last,
// fetched from the peers in turn until one has given them all. A peer's
// answer that conflicts is dropped: the calendar goes back to what this
// member has answered (its watermark), never further.
func (s *Service) fetchSeconds(ctx context.Context, d *snapshotDesc, peers Peers) error {
	st := s.cfg.Store
	_, start, _ := st.Head()
	log := s.cfg.Logger.With("to", d.last)
	log.Info("calendar behind the cluster's snapshot: fetching its seconds from peers", "after", start)
	began := time.Now()
	err := s.fromPeers(ctx, peers, "seconds", func(ctx context.Context, id uint64, alive func()) error {
		_, have, ok := st.Head()
		from := d.first
		if ok {
			from = have + 1
		}
		if from > d.last {
			return nil
		}
		f := &leafFetch{s: s, d: d, next: from, log: log.With("peer", id)}
		err := peers.Fetch(ctx, id, leafRequest(from, d.last), func(b []byte) error { alive(); return f.part(b) })
		if err == nil {
			err = f.finish()
		}
		if errors.Is(err, errConflict) {
			if rerr := s.dropUnanswered(); rerr != nil {
				return rerr
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	if err := st.Sync(); err != nil {
		return err
	}
	log.Info("calendar caught up from peers", "seconds", d.last-max(start, d.first-1), "took", time.Since(began).Round(time.Millisecond))
	return nil
}

// dropUnanswered takes the calendar back to the last second this member
// answered (its watermark; without one, nothing is dropped): the seconds
// after it came from a peer during a restore and were never checked
// against the cluster's root.
func (s *Service) dropUnanswered() error {
	w := s.cfg.Watermark
	if w == nil {
		return nil
	}
	st := s.cfg.Store
	m := w.Mark()
	first, last, ok := st.Head()
	if !ok || (m.Root != nil && m.Last >= last) {
		return nil
	}
	var to calendartree.State
	if m.Root != nil && m.Last >= first {
		var err error
		if to, err = st.stateAt(m.Last); err != nil {
			return err
		}
		if !to.Root().Equal(m.Root) {
			return fmt.Errorf("%w: the root after %d is %s, the watermark's %s", ErrHistoryLost, m.Last, to.Root(), m.Root)
		}
	}
	s.cfg.Logger.Warn("seconds fetched from a peer dropped: they do not lead to the cluster's root", "kept up to", m.Last, "dropped up to", last)
	return st.rollback(to)
}

func leafRequest(from, to uint64) []byte {
	b := binary.BigEndian.AppendUint64([]byte{fetchLeaves}, from)
	return binary.BigEndian.AppendUint64(b, to)
}

// leafFetch takes one peer's answer: the header, then leaves in order,
// appended in batches of a part.
type leafFetch struct {
	s       *Service
	d       *snapshotDesc
	next    uint64 // the second of the next leaf expected
	header  bool
	log     *slog.Logger
	lastLog time.Time
	leaves  []ksi.Imprint
}

func (f *leafFetch) part(b []byte) error {
	if !f.header {
		return f.checkHeader(b)
	}
	if len(b) == 0 || len(b)%imprintLen != 0 || uint64(len(b)/imprintLen) > f.d.last-f.next+1 {
		return fmt.Errorf("calendar: a part of %d bytes where leaves %d..%d were due", len(b), f.next, f.d.last)
	}
	// The tree built keeps some leaves (its peaks): they must not share
	// the transport's buffer.
	b = bytes.Clone(b)
	f.leaves = f.leaves[:0]
	for len(b) > 0 {
		leaf := ksi.Imprint(b[:imprintLen])
		if leaf.Alg() != calendarAlg {
			return fmt.Errorf("calendar: the leaf of second %d sent is not a SHA-256 imprint", f.next+uint64(len(f.leaves)))
		}
		f.leaves = append(f.leaves, leaf)
		b = b[imprintLen:]
	}
	st := f.s.cfg.Store
	next, nodes, err := calendartree.Append(st.State(), f.next, f.leaves)
	if err != nil {
		return fmt.Errorf("calendar: leaves from %d: %w", f.next, err)
	}
	if next.Last() == f.d.last && !next.Root().Equal(f.d.root) {
		// Checked before the last batch is written: what the peer sent
		// is not the calendar the cluster committed.
		return fmt.Errorf("%w: the seconds it sent up to %d give root %s; the cluster's snapshot says %s", errConflict, f.d.last, next.Root(), f.d.root)
	}
	if err := st.Write(next, nodes, false); err != nil {
		return err
	}
	f.s.cfg.Metrics.fetched(len(f.leaves))
	f.next += uint64(len(f.leaves))
	if time.Since(f.lastLog) > 10*time.Second {
		f.lastLog = time.Now()
		f.log.Info("fetching seconds", "at", f.next, "left", f.d.last+1-f.next)
	}
	return nil
}

// checkHeader checks the peer's root before the first second it sends
// against this member's: a peer on another history is refused before
// anything of it is written.
func (f *leafFetch) checkHeader(b []byte) error {
	f.header = true
	if len(b) == 0 || b[0] != leavesHeader {
		return errors.New("calendar: the answer does not start with its header")
	}
	theirs := ksi.Imprint(b[1:])
	st := f.s.cfg.Store.State()
	switch {
	case st.Empty() && len(theirs) == 0:
		return nil
	case st.Empty() || len(theirs) == 0:
		return fmt.Errorf("calendar: the peer's answer for seconds from %d does not fit this member's calendar", f.next)
	case !theirs.Equal(st.Root()):
		return fmt.Errorf("%w: its root after %d is %s, this member's %s", errConflict, st.Last(), theirs, st.Root())
	}
	return nil
}

// finish checks that the answer held every leaf asked for.
func (f *leafFetch) finish() error {
	if f.next != f.d.last+1 {
		return fmt.Errorf("calendar: the answer ended at second %d, before %d", f.next, f.d.last)
	}
	return nil
}

// ServeFetch answers a peer restoring a snapshot (raftnode.FetchServer):
// the leaves of a range of seconds this member holds, after a header
// with its root before the range, or its publication records up to a
// time, one per part.
func (s *Service) ServeFetch(ctx context.Context, req []byte, send func(part []byte) error) error {
	switch {
	case len(req) == 17 && req[0] == fetchLeaves:
		return s.serveLeaves(ctx, binary.BigEndian.Uint64(req[1:]), binary.BigEndian.Uint64(req[9:]), send)
	case len(req) == 9 && req[0] == fetchPublications:
		return s.servePublications(binary.BigEndian.Uint64(req[1:]), send)
	}
	return fmt.Errorf("calendar: fetch request of %d bytes is neither leaves nor publications", len(req))
}

func (s *Service) serveLeaves(ctx context.Context, from, to uint64, send func([]byte) error) error {
	st := s.cfg.Store
	// Only what this member has answered: seconds past its watermark
	// may be a restore's, not yet checked.
	first, last, ok := s.answeredHead()
	if !ok || from < first || to > last || from > to {
		return fmt.Errorf("calendar: seconds %d..%d asked; this member holds %d..%d", from, to, first, last)
	}
	hdr := []byte{leavesHeader}
	if from > first {
		root, err := st.Root(from - 1)
		if err != nil {
			return err
		}
		hdr = append(hdr, root...)
	}
	if err := send(hdr); err != nil {
		return err
	}
	part := make([]byte, 0, fetchPartLeaves*imprintLen)
	err := st.leaves(from, to, func(t uint64, leaf []byte) error {
		if err := ctx.Err(); err != nil {
			return err
		}
		part = append(part, leaf...)
		if len(part) == cap(part) || t == to {
			if err := send(part); err != nil {
				return err
			}
			s.cfg.Metrics.served(len(part) / imprintLen)
			part = part[:0]
		}
		return nil
	})
	return err
}

// leaves calls fn with the leaf of every second from..to, in order,
// read straight from the tree's nodes.
func (s *Store) leaves(from, to uint64, fn func(t uint64, leaf []byte) error) error {
	if err := s.Failed(); err != nil {
		return fmt.Errorf("%w: %v", ErrFailed, err)
	}
	var lo, hi [10]byte
	it, err := s.db.NewIter(&pebble.IterOptions{
		LowerBound: nodeKey(&lo, nodeID{Height: 0, Index: from}),
		UpperBound: nodeKey(&hi, nodeID{Height: 0, Index: to + 1}),
	})
	if err != nil {
		return fmt.Errorf("calendar: read leaves: %w", err)
	}
	defer it.Close()
	t := from
	for it.First(); it.Valid() && t <= to; it.Next() {
		k := it.Key()
		if k[9] != 0 {
			continue // a node above the leaves
		}
		if binary.BigEndian.Uint64(k[1:9]) != 2*t+1 {
			return fmt.Errorf("%w: the leaf of second %d is missing", ErrCorrupt, t)
		}
		v := it.Value()
		if len(v) != imprintLen || ksi.Imprint(v).Alg() != calendarAlg {
			return fmt.Errorf("%w: the leaf of second %d is not a SHA-256 imprint", ErrCorrupt, t)
		}
		if err := fn(t, v); err != nil {
			return err
		}
		t++
	}
	if err := it.Error(); err != nil {
		return fmt.Errorf("calendar: read leaves: %w", err)
	}
	if t <= to {
		return fmt.Errorf("%w: the leaf of second %d is missing", ErrCorrupt, t)
	}
	return nil
}

// markApplied records index as the last log entry applied, synced.
func (s *Store) markApplied(index uint64) (err error) {
	return s.finishRestore(nil, nil, index)
}

// finishRestore stores restored publication records and file (if any)
// and the applied index in one synced batch.
func (s *Store) finishRestore(recs []*ksi.PublicationRecord, file []byte, applied uint64) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return fmt.Errorf("%w: %v", ErrFailed, s.failed)
	}
	defer s.recoverWriteFailure(&err)
	b := s.db.NewBatch()
	defer b.Close()
	for _, rec := range recs {
		b.Set(pubKey(rec.Data.Time), rec.Raw, nil)
	}
	if file != nil {
		b.Set(blobPubFile, file, nil)
	}
	b.Set(metaApplied, u64(applied), nil)
	if err := s.commitLocked(b, true, "restore"); err != nil {
		return err
	}
	s.applied = applied
	return nil
}

// servePublications sends this member's publication records up to time
// upTo, oldest first, one per part.
func (s *Service) servePublications(upTo uint64, send func([]byte) error) error {
	p, ok := s.publisher.(*Publisher)
	if !ok {
		return errors.New("calendar: this member has no publications")
	}
	for _, rec := range p.Publications() {
		if rec.Data.Time > upTo {
			break
		}
		if err := send(rec.Raw); err != nil {
			return err
		}
	}
	return nil
}

// snapshot describes the calendar and the publications as of the last
// applied entry.
func (s *Service) snapshot() (*snapshotDesc, error) {
	state := s.cfg.Store.State()
	if state.Empty() {
		return nil, nil
	}
	d := &snapshotDesc{first: state.First(), last: state.Last(), root: state.Root()}
	if p, ok := s.publisher.(*Publisher); ok {
		ps, err := p.snapshot()
		if err != nil {
			return nil, err
		}
		d.pubs = ps
	}
	return d, nil
}

// snapshot returns what the current file was built from, nil before the
// first publication (each member then serves its own initial file).
func (p *Publisher) snapshot() (*pubSnapshot, error) {
	p.mu.RLock()
	pubs, file := p.pubs, p.file
	p.mu.RUnlock()
	if len(pubs) == 0 {
		return nil, nil
	}
	f, err := ksi.ParsePublicationsFile(file)
	if err != nil {
		return nil, fmt.Errorf("calendar: the publications file served: %w", err)
	}
	ps := &pubSnapshot{count: uint64(len(pubs)), latest: pubs[len(pubs)-1].Data.Time,
		creationTime: f.Header.CreationTime, uri: f.Header.RepositoryURI, signature: f.Signature}
	for _, c := range f.Certificates {
		ps.certs = append(ps.certs, c.Raw)
	}
	return ps, nil
}

// restorePublications brings the member's publications to the
// snapshot's: the records it lacks are fetched from a peer, each must be
// of a second this member holds with the same root, and the file is
// rebuilt from them with the snapshot's header, certificates and
// signature, which must sign it. It reports whether it changed anything.
func (s *Service) restorePublications(ctx context.Context, d *snapshotDesc, peers Peers) (bool, error) {
	p, ok := s.publisher.(*Publisher)
	if d.pubs == nil || !ok {
		return false, nil
	}
	if l := p.Latest(); l != nil && l.Data.Time >= d.pubs.latest {
		return false, nil
	}
	if peers == nil {
		return false, errors.New("publications missing and no peer to fetch them from")
	}
	err := s.fromPeers(ctx, peers, "publications", func(ctx context.Context, id uint64, alive func()) error {
		var recs []*ksi.PublicationRecord
		req := binary.BigEndian.AppendUint64([]byte{fetchPublications}, d.pubs.latest)
		err := peers.Fetch(ctx, id, req, func(b []byte) error {
			alive()
			rec, err := s.checkPublication(b, recs, d)
			if err == nil {
				recs = append(recs, rec)
			}
			return err
		})
		if err != nil {
			return err
		}
		return p.restore(recs, d)
	})
	return err == nil, err
}

// checkPublication parses a record a peer sent and checks it follows
// the ones before and publishes this member's root of its second.
func (s *Service) checkPublication(b []byte, before []*ksi.PublicationRecord, d *snapshotDesc) (*ksi.PublicationRecord, error) {
	if uint64(len(before)) >= d.pubs.count {
		return nil, fmt.Errorf("calendar: more than the snapshot's %d publications sent", d.pubs.count)
	}
	elem, err := tlv.ReadOne(bytes.Clone(b))
	if err != nil {
		return nil, fmt.Errorf("calendar: publication record sent: %w", err)
	}
	rec, err := ksi.ParsePublicationRecord(elem)
	if err != nil {
		return nil, fmt.Errorf("calendar: publication record sent: %w", err)
	}
	if n := len(before); n > 0 && rec.Data.Time <= before[n-1].Data.Time {
		return nil, fmt.Errorf("calendar: publication of %d sent after that of %d", rec.Data.Time, before[n-1].Data.Time)
	}
	root, err := s.cfg.Store.Root(rec.Data.Time)
	if err != nil {
		return nil, fmt.Errorf("calendar: publication of %d sent: %w", rec.Data.Time, err)
	}
	if !root.Equal(rec.Data.Hash) {
		return nil, fmt.Errorf("%w: it sent the publication of %d with root %s; the cluster's root is %s", errConflict, rec.Data.Time, rec.Data.Hash, root)
	}
	return rec, nil
}

// restore installs the snapshot's publications: recs must be all of
// them, and the file built from them must carry the snapshot's
// signature.
func (p *Publisher) restore(recs []*ksi.PublicationRecord, d *snapshotDesc) error {
	ps := d.pubs
	if uint64(len(recs)) != ps.count || len(recs) == 0 || recs[len(recs)-1].Data.Time != ps.latest {
		return fmt.Errorf("%w: %d publications sent; the snapshot has %d up to %d", errConflict, len(recs), ps.count, ps.latest)
	}
	hdr := ksi.PublicationsFileHeader{Version: 1, CreationTime: ps.creationTime, RepositoryURI: ps.uri}
	certs := make([]ksi.CertificateRecord, len(ps.certs))
	for i, raw := range ps.certs {
		certs[i] = ksi.CertificateRecord{Raw: raw}
	}
	content, err := ksi.BuildPublicationsFileContent(hdr, certs, recs)
	if err != nil {
		return fmt.Errorf("calendar: build publications file: %w", err)
	}
	if err := signs(ps.signature, content); err != nil {
		return fmt.Errorf("%w: the snapshot's signature is not over the file rebuilt from its records: %v", errConflict, err)
	}
	file, err := ksi.AppendPublicationsFileSignature(content, ps.signature)
	if err != nil {
		return err
	}
	// The member's own publications must be among the snapshot's:
	// stored records are never removed, so one that is not would stay
	// in its file after a restart.
	byTime := make(map[uint64][]byte, len(recs))
	for _, r := range recs {
		byTime[r.Data.Time] = r.Raw
	}
	for _, own := range p.Publications() {
		if !bytes.Equal(byTime[own.Data.Time], own.Raw) {
			return fmt.Errorf("%w: this member's publication of %d is not the cluster's", ErrHistoryLost, own.Data.Time)
		}
	}
	if err := p.cfg.Store.finishRestore(recs, file, p.cfg.Store.Applied()); err != nil {
		return err
	}
	if w := p.cfg.Watermark; w != nil {
		if err := w.Published(ps.latest); err != nil {
			return err
		}
	}
	p.mu.Lock()
	p.pubs, p.file, p.etag = recs, file, etag(file)
	p.mu.Unlock()
	p.cfg.Logger.Info("publications restored from the cluster's snapshot", "count", len(recs), "newest", ps.latest)
	return nil
}

// stateAt is the calendar's state as it was after second t (at most
// the last), rebuilt from the stored nodes.
func (s *Store) stateAt(t uint64) (calendartree.State, error) {
	if _, err := s.checkRange(t, t); err != nil {
		return calendartree.State{}, err
	}
	first, _, _ := s.Head()
	st, err := calendartree.Load(nodeReader{s}, first, t)
	if err != nil {
		return calendartree.State{}, fmt.Errorf("%w: %v", ErrCorrupt, err)
	}
	return st, nil
}

// rollback takes the store back to an earlier state of its calendar
// (the zero State: empty), synced. It is for seconds that were never
// answered nor applied: those a restore fetched from a peer whose
// calendar turned out not to be the cluster's. Their nodes stay on disk
// unread (reads stop at the state's last second) until appended again.
func (s *Store) rollback(to calendartree.State) (err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.failed != nil {
		return fmt.Errorf("%w: %v", ErrFailed, s.failed)
	}
	cur := s.state
	if !to.Empty() && (cur.Empty() || to.First() != cur.First() || to.Last() > cur.Last()) {
		return fmt.Errorf("calendar: roll back to %d..%d, not part of the stored %d..%d", to.First(), to.Last(), cur.First(), cur.Last())
	}
	defer s.recoverWriteFailure(&err)
	b := s.db.NewBatch()
	defer b.Close()
	if to.Empty() {
		b.Delete(metaFirst, nil)
		b.Delete(metaLast, nil)
		b.Delete(metaRoot, nil)
	} else {
		b.Set(metaFirst, u64(to.First()), nil)
		b.Set(metaLast, u64(to.Last()), nil)
		b.Set(metaRoot, to.Root(), nil)
	}
	if err := s.commitLocked(b, true, "roll back"); err != nil {
		return err
	}
	s.state = to
	s.appends.Add(1)
	// Nodes above the new last second will be written again, maybe
	// with other hashes: none may be served from the cache.
	s.cacheMu.Lock()
	clear(s.cache)
	s.cacheMu.Unlock()
	return nil
}
