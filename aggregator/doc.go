// Package aggregator is Tempel's aggregation service: it queues signing
// requests, closes a round every period, builds the round tree once, has
// its root signed upstream (the calendar or a parent aggregator, through
// the same signing API) and answers every request with its own signature
// (docs/design/architecture.md#data-flow).
//
// Every signature names who asked: the aggregator adds a metadata link
// with the caller's identity as the first step above the document hash
// (docs/design/formats.md#metadata).
//
// A document hash may be of any algorithm Tempel implements that is not
// deprecated at signing time (docs/design/formats.md#hash-algorithms); the round tree hashes with
// SHA-256 above it. The KSI PDU v2 signing protocol is served by
// [PDUSigner], whatever the transport: its answers are relative to each
// request's level, as the reference clients expect (docs/design/formats.md#level-corrections), while
// [Engine.Sign] and the gRPC and REST APIs return finished signatures.
package aggregator
