// Package raftlog is the durable raft log of a replicated calendar member:
// an implementation of etcd raft's [raft.Storage] on a Pebble database of
// its own, plus the writes the Ready loop needs. It is the first part of
// the replicated calendar (docs/design/replication.md) and knows nothing
// of the calendar: entries and snapshot data are opaque bytes here.
//
// # What it stores
//
// One Pebble database in a directory of its own (not the calendar's
// store), so that the log can be checked, wiped or repaired from peers
// without touching the calendar, and the calendar without the log:
//
//   - the raft log entries, keyed by their index in big-endian order so
//     that iteration is in log order;
//   - the hard state (term, vote, commit);
//   - the latest snapshot (its metadata, the membership at that index and
//     the bytes the application gave [Storage.CreateSnapshot]);
//   - the index and term of the entry just before the first one kept,
//     which raft asks for as Term(FirstIndex()-1) after a compaction or a
//     snapshot;
//   - a format marker, so a directory holding anything else is refused.
//
// Every value carries a CRC-32C of its bytes and entries carry their own
// index and term, checked against the key when read.
//
// # Durability contract
//
// Every write method ([Storage.Save], [Storage.ApplySnapshot],
// [Storage.Compact], [Storage.CreateSnapshot]) is one Pebble batch
// committed with a sync: when it returns nil, all of it survives a crash
// of the process or of the machine, and when it fails or the process dies
// during it, none of it is visible after reopening. Save in particular
// writes the snapshot, the entries (cutting any conflicting suffix) and
// the hard state of one raft Ready together, so the Ready loop may send
// the Ready's messages as soon as Save returns, as etcd raft requires.
// A write whose outcome is unknown (the disk failed under it) fails, and
// so does every later write, until the log is reopened and checked.
//
// [Open] checks the whole log before returning: entries contiguous from
// the first kept index, keys matching their contents, terms not
// decreasing, checksums, the commit index within the log. Damage is
// refused with an error wrapping [ErrCorrupt] that names what is wrong; a
// member whose log is refused is repaired from its peers, never started
// on a log that may have lost what it acknowledged.
//
// Reads answer from the database with small in-memory bookkeeping (first
// and last index, the hard state, the snapshot's metadata): memory does
// not grow with the log, and [Storage.Entries] stops at its size limit
// (returning at least one entry, as raft expects).
//
// # Use in a Ready loop
//
//	rd := rn.Ready()
//	if err := st.Save(rd.HardState, rd.Entries, rd.Snapshot); err != nil {
//		return err // nothing of this Ready is durable: send nothing
//	}
//	send(rd.Messages)
//	apply(rd.CommittedEntries)
//	rn.Advance(rd)
//
// and, once the application has applied index i and saved its state:
//
//	st.CreateSnapshot(i, confState, descriptor)
//	st.Compact(i - keep)
//
// A Storage is safe for concurrent use: raft reads it from its own
// goroutine while the Ready loop writes.
package raftlog
