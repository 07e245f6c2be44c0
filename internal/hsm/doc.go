// Package hsm opens signing keys kept in a PKCS#11 token (a hardware
// security module, or SoftHSM2 for development and tests) and makes new
// ones there. A key is named by an RFC 7512 URI such as
//
//	pkcs11:token=tempel;object=tempel-calendar;type=private
//
// and used as a crypto.Signer: the private key never leaves the token,
// which signs each digest it is given.
//
// The module (the vendor's PKCS#11 library) and the user PIN come from
// [Config]; a URI may also carry its own module-path, pin-value or
// pin-source. The PIN is never logged nor put into an error.
//
// PKCS#11 needs cgo (the modules are C libraries). A binary built with
// CGO_ENABLED=0 has this package's API but refuses every pkcs11: URI
// with [ErrNoCgo], so the pure-Go cross builds keep working.
package hsm
