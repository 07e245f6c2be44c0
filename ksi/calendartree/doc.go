// Package calendartree is the arithmetic of the KSI hash calendar
// (docs/design/formats.md#calendar-hash-chains): appending leaves, roots and calendar hash chains,
// as pure functions with no I/O. Storage belongs to the caller: the
// functions read nodes through a [NodeReader] the caller provides and
// return the nodes the caller must store, in the manner of
// golang.org/x/mod/sumdb/tlog.
//
// # Shape
//
// The calendar has one leaf per POSIX second; the leaf index is the
// second. The tree over leaves 0..p joins the largest perfect subtree on
// the left with the calendar tree of the remaining leaves on the right,
// so it is the list of perfect subtrees ("peaks") given by the binary
// digits of p+1, folded from the right. Node (h, i) ([NodeID]) is the
// perfect subtree of height h over leaves i·2^h … (i+1)·2^h−1; leaves
// have height 0.
//
// A calendar starts at its first second: the leaves before it are
// [EmptyLeaf], and nodes made only of them are computed here, never read
// from the [NodeReader] nor returned to be stored. Every other node of a
// completed perfect subtree is returned by [Append] when its last leaf
// is appended, so any root or chain costs O(log p) reads.
//
// # The state-machine step
//
// [Append] is the calendar's state-machine step: a deterministic
// function from a [State] and the leaves of the next seconds to the next
// State and the nodes to store. It reads nothing, and appending a range
// of seconds gives the same State and nodes as appending them one by
// one. A calendar replicated on a consensus engine applies it to the same
// log of (second, leaf) entries on every replica and gets the same nodes
// and roots on each. The caller stores the nodes durably before it uses
// the new State: nothing derived from the new root may leave the process
// before the nodes it depends on are saved.
//
// Hashing is the calendar step of package ksi ([ksi.Hasher.CalendarStep]),
// the one implementation shared with chain verification.
package calendartree
