// Package tsp is the RFC 3161 time-stamp protocol core of Tempel's
// front door for legacy time-stamping clients (docs/design/rfc3161.md):
// it parses requests, builds tokens whose signed content is fixed before
// aggregation, and parses, verifies and re-embeds the KSI signature that
// every Tempel token carries.
//
// A token's signed attributes digest, the value the TSA key signs, is also
// the document hash aggregated into the calendar (through the RFC 3161
// compatibility record of ksi-spec §3.6), so one round gives every token
// both a TSA signature and a keyless KSI signature. The KSI signature
// travels in the SignerInfo's unsigned attributes under [OIDKSISignature],
// outside what the TSA key signs: extending it replaces that attribute
// and keeps the TSA signature valid.
//
// The package is pure: no I/O. Parsing is lenient where real clients
// need it (BER booleans, any nonce encoding) and bounded everywhere.
package tsp
