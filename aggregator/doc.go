// Package aggregator is Tempel's aggregation service: it queues signing
// requests, closes a round every period, builds the round tree once, has
// its root signed upstream (the calendar or a parent aggregator, through
// the same signing API) and answers every request with its own signature
// (DESIGN.md §2).
//
// Every signature names who asked: the aggregator adds a metadata link
// with the caller's identity as the first step above the document hash
// (ksi-spec §4.4).
package aggregator
