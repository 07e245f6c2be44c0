// Package pki holds Tempel's keys and certificates (docs/design/architecture.md#keys-and-trust) and the
// two signing operations that use them:
//
//   - [Set.SignCalendarRoot] signs a calendar root for a calendar
//     authentication record (0x805): RSA PKCS#1 v1.5 with SHA-256 over the
//     exact published-data TLV bytes (docs/design/formats.md#calendar-authentication-records), by the calendar
//     signer certificate, which the publications file carries as a 0x702
//     record under [Set.CalendarCertID].
//   - [Set.SignPublicationsFile] signs the publications file: a detached
//     PKCS#7/CMS SignedData with SHA-256 by the publisher certificate, whose
//     subject carries the e-mail address verifiers pin with
//     --cnstr E=<address> ([Set.Constraint]), chained to the root CA that
//     verifiers trust (docs/design/formats.md#publications-file).
//
// # Files
//
// A key directory (conventionally <data-dir>/keys/, mode 0700) holds:
//
//	root.pem       root CA certificate (0644), the trust anchor verifiers pin
//	root.key       root CA key (0600); only [Init] needs it, [Load] checks it if present
//	publisher.pem  publications-file signer certificate (0644)
//	publisher.key  its key (0600)
//	calendar.pem   calendar-root signer certificate (0644)
//	calendar.key   its key (0600)
//	tsa.pem        RFC 3161 time-stamping certificate (0644), extended key
//	               usage timeStamping, critical ([Set.TSASigner])
//	tsa.key        its key (0600; RSA-2048, or ECDSA P-256 with [InitOptions.TSAKey])
//	tls.pem        development TLS server certificate (0644), optional
//	tls.key        its key (0600, ECDSA P-256)
//	members.pem    every member's calendar certificate (0644), only for a
//	               member of a replicated calendar ([Set.Members])
//	retired-calendar.pem  calendar certificates retired by key rotations
//	               (0644), each re-issued to end at its retirement ([Rotate])
//
// Keys are PEM "PRIVATE KEY" blocks (PKCS#8). They are created with mode
// 0600 from the start (never written and then chmod-ed), and a key file
// that group or others may access is refused when loading. Operators with
// their own certificates point [LoadFiles] at them instead.
//
// # Development PKI
//
// [Init] (or [LoadOrInit] on a first start) creates a fresh PKI: an
// RSA-3072 root CA valid for 20 years, an RSA-2048 publisher certificate
// with subject emailAddress=publications@tempel.test, and an RSA-2048
// calendar signer certificate, both valid for 10 years and signed by the
// root with sha256WithRSAEncryption. Every NotBefore is one hour in the
// past to tolerate clock skew. RSA throughout keeps the PKI acceptable to
// the reference SDKs and ksi-tool (docs/design/formats.md#calendar-authentication-records).
// With [InitOptions.TLSHosts] (as `tempel serve` and `tempel keys init`
// pass) the root also issues a TLS server certificate for localhost,
// 127.0.0.1 and ::1 ([IssueDevTLS]), so that `tempel serve --tls` works
// with root.pem as the clients' CA.
//
// The development PKI keeps root.key beside the online keys: it is for
// development only. In production the root key is made and kept offline
// and the server's key directory holds only root.pem and the leaf
// certificates and keys ([Load] accepts a directory without root.key).
//
// # Replicated calendar
//
// The members of a replicated calendar share one root and one publisher,
// so verifiers pin the same root.pem and --cnstr whichever member they
// use, but each member signs calendar roots with its own calendar key.
// The publications file therefore carries every member's calendar
// certificate ([Set.CertificateRecords]), read from members.pem or
// [Files.MemberCerts]; each must chain to the root and pass the checks of
// a calendar certificate. [InitMembers] lays out the development PKI of
// such a cluster: DIR/node1 … DIR/nodeN are the members' data
// directories, and the root key stays in DIR/ca, which no member needs.
//
// # Rotation
//
// [Rotate] replaces the calendar, publisher, TSA or TLS key with a new
// one issued by the same root, so verifiers' pins stay as they are
// (docs/design/rotation.md). A retired calendar certificate is re-issued
// to end at its retirement and published under the id of the certificate
// it replaces ([Set.Retired]), so roots signed before keep verifying and a
// stolen retired key cannot sign later ones that verify.
//
// # Secrets
//
// Nothing here logs, and no error carries key material: errors name files,
// modes and certificate subjects only.
//
// A [Set] is read-only after it is built and safe for concurrent use.
package pki
