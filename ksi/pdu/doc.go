// Package pdu implements the messages of the KSI aggregator and extender
// protocol, PDU version 2 (docs/design/formats.md#pdu-v2), byte-compatible with libksi,
// goksi and ksi-tool.
//
// # Envelopes
//
// Each message is one TLV element of at most 65539 bytes:
//
//	0x220 [AggregatorRequest]   0x221 [AggregatorResponse]
//	0x320 [ExtenderRequest]     0x321 [ExtenderResponse]
//
// Its children are a header (0x01, first), one or more payloads and an
// HMAC imprint (0x1F, last) over all bytes of the message that precede the
// HMAC digest. A response may instead be a bare error element (0x03) with
// no header and no HMAC: servers send it when they could not read or
// authenticate the request, so there is no key to authenticate it with.
// Legacy PDU version 1 (0x200, 0x300) is recognised and refused with
// [ErrVersion1].
//
// # Parsing
//
// The Parse functions check the envelope order, the schema of every
// payload, the integer and string rules of docs/design/formats.md#values, and reject
// unknown critical elements; unknown non-critical elements are kept raw so
// that a relay can pass them on. Every structural error wraps
// [ksi.ErrFormat]. Parsing does not check the HMAC: call [Envelope.Verify]
// with the shared key, and compare [Envelope.HMAC]'s algorithm with the
// configured one, before trusting anything in the message.
//
// Parsed values alias the input buffer (Raw, signature elements, unknown
// elements); the caller must not modify it afterwards.
//
// Signature elements (0x801–0x806) and calendar chains (0x802) are carried
// as raw bytes, not decoded here: they are covered by the HMAC and by the
// signature's own hashes, and decoding them is the job of package ksi.
//
// # Encoding
//
// The Encode methods write the canonical form (shortest TLV headers,
// minimal integers, fixed element order) and compute the HMAC with the
// given algorithm and key, so a request built by ksi-tool re-encodes byte
// for byte. Raw elements (signature elements, calendar chains, unknown
// elements) are embedded unchanged. [EncodeErrorPDU] writes a bare error
// response.
package pdu
