package server

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// Users are the KSI PDU users: login id and HMAC key. The zero value (or
// nil) is development mode.
type Users struct {
	keys map[string][]byte
	dev  bool
}

// DevUsers is development mode: user "anon" with key "anon", as the
// reference SDKs' test setups use, and gRPC/REST calls without
// credentials (wrong credentials are refused as in production).
func DevUsers() *Users { return &Users{keys: map[string][]byte{"anon": []byte("anon")}, dev: true} }

// Dev reports development mode.
func (u *Users) Dev() bool { return u == nil || u.dev }

// MaxUsersFile bounds the users file.
const MaxUsersFile = 1 << 20

// LoadUsers reads a users file: one LOGIN:KEY per line; blank lines and
// lines starting with # are ignored. The file must not be readable by
// group or others, since it holds keys.
//
// The checks are made on the file opened, not on the path (which may
// change in between), and it must be a regular file: a FIFO there would
// hold the start for ever.
func LoadUsers(path string) (*Users, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("users file %s is not a regular file", path)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("users file %s is readable by others (mode %o): run chmod 600 %s", path, st.Mode().Perm(), path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxUsersFile+1))
	if err != nil {
		return nil, err
	}
	if len(b) > MaxUsersFile {
		return nil, fmt.Errorf("users file %s is larger than %d bytes", path, MaxUsersFile)
	}
	return ParseUsers(b)
}

// ParseUsers parses the users file format.
func ParseUsers(b []byte) (*Users, error) {
	u := &Users{keys: make(map[string][]byte)}
	sc := bufio.NewScanner(bytes.NewReader(b))
	n := 0
	for sc.Scan() {
		n++
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		login, key, ok := strings.Cut(line, ":")
		if !ok || login == "" || key == "" {
			// The line may hold a key: do not echo it.
			return nil, fmt.Errorf("users file line %d: want LOGIN:KEY", n)
		}
		if _, dup := u.keys[login]; dup {
			return nil, fmt.Errorf("users file line %d: login %q listed twice", n, login)
		}
		u.keys[login] = []byte(key)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return u, nil
}

// Key returns the HMAC key of a login.
func (u *Users) Key(login string) ([]byte, bool) {
	if u == nil {
		return DevUsers().Key(login)
	}
	k, ok := u.keys[login]
	return k, ok
}

// check reports whether login is a user and whether key (gRPC/REST
// credentials) is its key, in constant time for the key.
func (u *Users) check(login, key string) (known, match bool) {
	want, known := u.Key(login)
	// Compare digests so the time does not depend on the key length.
	a, b := sha256.Sum256([]byte(key)), sha256.Sum256(want)
	return known, hmac.Equal(a[:], b[:]) && known
}
