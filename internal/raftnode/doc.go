// Package raftnode runs one member of a raft cluster: etcd raft's
// RawNode on the durable log of internal/raftlog, driven by one Ready
// loop, talking to the other members over gRPC. It is the generic
// member under the replicated calendar (docs/design/replication.md) and
// knows nothing of the calendar: entries are opaque bytes given to a
// [StateMachine].
//
// # The Ready loop
//
// One goroutine owns the RawNode. It takes ticks from a ticker,
// proposals from [Node.Propose], messages from the transport and
// delivery reports, each through a bounded channel (Config.ProposalQueue,
// Config.ReceiveQueue: a full queue refuses at once with [ErrBusy]), and
// takes up to 256 queued inputs per turn so that they share one synced
// write. For each Ready, in this order:
//
//  1. Save the hard state, the entries and the snapshot in one synced
//     raftlog batch. Nothing of the Ready leaves the member before: a
//     vote or an acknowledgement sent first could be forgotten by a
//     crash and given twice.
//  2. Restore a snapshot received from the leader into the state machine.
//  3. Hand the messages to the transport (which never blocks).
//  4. Apply the committed entries: normal entries to the state machine
//     (all of them, the empty ones a new leader commits included),
//     configuration changes to raft and the transport.
//  5. Advance; every Config.SnapshotEvery applied entries, snapshot the
//     state machine into the log and compact it, keeping
//     Config.KeepEntries entries for followers a little behind.
//
// An error saving, applying or restoring is fatal: the loop stops, the
// transport stops, [Node.Done] is closed and [Node.Err] says why. Nothing
// after the failed step is applied or sent. So is a panic in the loop:
// raft's invariant checks (which a message from a broken or hostile
// member can trip) and the state machine's own.
//
// # Restart
//
// raft is restarted with Applied at the log's snapshot, so it hands back
// every committed entry after it: configuration changes rebuild the
// membership, and normal entries at or below the state machine's
// Applied() are skipped. A machine behind the log's snapshot is restored
// from it first; a machine ahead of the log's commit index (the log was
// lost or belongs elsewhere) is refused: the member must rejoin.
//
// # Membership and addresses
//
// Each conf change carries the member's address in its context, and the
// log's snapshots carry the address book ahead of the state machine's
// bytes (snapdata.go), so a member restarted after the changes were
// compacted away still knows every member's address. An address given
// in Config.Peers takes precedence over one learnt from the log. New
// members join as learners ([Node.AddMember], started with Config.Join
// on an empty directory) and are promoted by [Node.PromoteMember].
// Raft messages from a member not in the address book are refused.
//
// # Leadership and proposals
//
// PreVote and CheckQuorum are always on: a member back from a partition
// does not depose the leader, and a leader cut off from its quorum steps
// down after an election timeout, so it cannot commit (nor, therefore,
// apply or answer) anything. Proposals are made at the leader only
// (followers answer [NotLeaderError] naming it); a proposal the leader
// accepted may still be lost by a leader change, and a caller that
// retries may get it committed twice, so state machines deduplicate.
//
// # Transport
//
// [GRPCTransport] sends to each peer over one lazily dialled connection
// (the caller's dial options carry TLS), a long-lived client stream of
// the hand-written service tempel.raft.v1.Raft/Send fed from a bounded
// queue, and a stream of its own per snapshot. Whatever cannot be queued
// or sent is dropped and reported to raft, which retransmits. The
// receiving side is [RegisterServer] on the node's gRPC server.
// [FaultTransport] wraps a transport to lose or delay messages in tests.
package raftnode
