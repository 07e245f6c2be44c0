// Package ksi is the pure core of Tempel: the KSI data formats and hashing
// rules, with no I/O (docs/design/formats.md).
//
// # Contents
//
//   - Hash algorithms and imprints ([HashAlg], [Imprint]) with their
//     deprecation and obsolescence dates.
//   - The signature model ([Signature], [AggregationChain],
//     [CalendarChain], [PublicationRecord], [CalendarAuthRecord],
//     [RFC3161Record], [Metadata]). Parsing keeps every part's exact bytes,
//     so [Signature.Encode] of a parsed signature gives back its input and
//     what was hashed or signed is never re-encoded.
//   - Hash-chain steps ([Hasher], [ChainOutput], [CalendarChain.Output])
//     and calendar time from chain shape ([CalendarLeafTime]).
//   - Publication data, publication strings ([PublicationString]) and
//     the publications file ([PublicationsFile]).
//
// The PDU messages of the aggregator and extender protocol are in
// package ksi/pdu; the TLV codec is in ksi/tlv; the calendar tree
// (appending seconds, roots and calendar chains over the caller's
// storage) is in ksi/calendartree.
//
// # Errors
//
// Every parse error wraps [ErrFormat] and names the element path, e.g.
// "ksi: format error: signature: aggregation chain: element 0x5: …".
// Parsers bound their input ([MaxObjectSize]) and never panic.
package ksi
