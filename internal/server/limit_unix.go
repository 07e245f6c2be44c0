//go:build unix

package server

import (
	"errors"
	"syscall"
)

// temporaryErrno reports errors accept(2) returns while the listener is
// fine: out of descriptors (EMFILE, ENFILE) or memory, a connection
// aborted or refused by a firewall before it was taken, and the network
// errors Linux passes on from the new socket (see accept(2)).
func temporaryErrno(err error) bool {
	var e syscall.Errno
	if !errors.As(err, &e) {
		return false
	}
	switch e {
	case syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM,
		syscall.ECONNABORTED, syscall.ECONNRESET, syscall.EPERM, syscall.EPROTO,
		syscall.EINTR, syscall.EAGAIN, syscall.ETIMEDOUT,
		syscall.ENETDOWN, syscall.ENETUNREACH, syscall.EHOSTDOWN, syscall.EHOSTUNREACH, syscall.ENOPROTOOPT, syscall.EOPNOTSUPP:
		return true
	}
	return false
}

// nofileLimit is the process's soft descriptor limit (RLIMIT_NOFILE), 0
// if unknown or unlimited. Go raises the soft limit to the hard one at start.
func nofileLimit() uint64 {
	var r syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &r); err != nil {
		return 0
	}
	// Cur is uint64 on some systems and int64 on others; RLIM_INFINITY
	// is all ones in both.
	cur := uint64(r.Cur)
	if cur == ^uint64(0) {
		return 0
	}
	return cur
}
