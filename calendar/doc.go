// Package calendar is Tempel's hash calendar: the only durable state on the
// signing path (docs/design/architecture.md, docs/design/durability.md).
//
// # Parts
//
//   - [Store]: the calendar tree in Pebble, one leaf per POSIX second,
//     every completed perfect-subtree node stored, so any root or chain
//     costs O(log t) reads. The tree arithmetic is package
//     ksi/calendartree; appending a second is one deterministic
//     state-machine step there (calendartree.Append) and one synced batch
//     here.
//   - [Service]: the second loop. Roots submitted during second t are
//     joined in a top tree whose root becomes leaf t right after t ends;
//     every submitter is answered with its aggregation chain, the calendar
//     chain and a calendar authentication record, never before the leaf is
//     synced.
//   - Extending: chains from leaf t to any later root ([Store.Chain]).
//   - [Publisher]: periodic publications and the signed publications file.
package calendar
