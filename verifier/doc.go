// Package verifier checks KSI signatures offline, with the policies and
// result codes of the reference implementations (docs/design/formats.md#verification-policies).
//
// # Policies
//
//   - [Internal]: the signature is consistent in itself (hash chains,
//     times, chain indexes, metadata, records). Every other policy starts
//     with it.
//   - [KeyBased]: the calendar authentication record is a valid PKI
//     signature by a certificate of a trusted publications file.
//   - [PublicationsFileBased]: the signature's publication is in a trusted
//     publications file, or the signature extends (through an [Extender])
//     to a publication in the file.
//   - [UserPublicationBased]: as above, against a publication the user
//     supplies (a publication string from print).
//   - [CalendarBased]: the signature's calendar chain agrees with the
//     calendar, asked through an [Extender].
//   - [Default]: internal, then publications-file based, then key based
//     when the file gives no answer.
//
// Each [Report] says OK, FAIL or NA with the KSI error code (GEN-01 …
// CAL-04), the rule that decided and a message a person understands.
//
// # Trust
//
// Nothing here reads the wall clock or the network. [VerifyPublicationsFile]
// checks a publications file's detached PKCS#7 signature against trust
// roots and certificate constraints at a time the caller gives; the
// extender is an interface the caller implements.
package verifier
