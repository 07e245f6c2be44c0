//go:build !unix

package server

// temporaryErrno: outside Unix, only errors that say they are temporary
// are retried (see temporaryAcceptError).
func temporaryErrno(error) bool { return false }

// nofileLimit: no descriptor limit is known outside Unix.
func nofileLimit() uint64 { return 0 }
