package hsm

import (
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"
	"sync"
	"time"
)

// Environment variables read by the CLI for [Config].
const (
	EnvModule = "TEMPEL_PKCS11_MODULE"
	EnvPIN    = "TEMPEL_PKCS11_PIN"
)

// Defaults of [Config].
const (
	// DefaultMaxSessions bounds the sessions opened per token: signing
	// is one calendar root a second plus the publications file and RFC
	// 3161 tokens, so a few sessions suffice; more callers wait.
	DefaultMaxSessions = 8
	// DefaultSessionWait is how long a signer waits for a free session
	// before it fails, so a token that stopped answering does not hold
	// callers forever.
	DefaultSessionWait = 10 * time.Second
	// DefaultReopenEvery is the least time between two attempts of a key
	// to open its token again after a failed signature: the calendar
	// signs once a second, so it tries about once a second, and a
	// missing token is not hammered.
	DefaultReopenEvery = time.Second
	// DefaultSignTimeout bounds one signature in the token. A token
	// signs in milliseconds; one that takes seconds is stuck, and the
	// calendar must report that rather than wait on it.
	DefaultSignTimeout = 5 * time.Second
)

// ErrNoCgo is returned for a pkcs11: URI by a binary built without cgo.
var ErrNoCgo = errors.New("hsm: this tempel was built without cgo (CGO_ENABLED=0), so it cannot load a PKCS#11 module; use a build with cgo for pkcs11: keys")

// Supported reports whether this build can open PKCS#11 modules (it
// was built with cgo).
const Supported = supported

// maxPINFile bounds a PIN file: a PIN is short, a wrong path is not.
const maxPINFile = 4096

// Config says how to reach the tokens.
type Config struct {
	// Module is the path of the PKCS#11 library (for SoftHSM2 on Debian
	// /usr/lib/softhsm/libsofthsm2.so). A URI's module-path, when given,
	// must name the same library.
	Module string
	// PIN is the user PIN, used unless a URI brings its own pin-value or
	// pin-source. Never logged.
	PIN string
	// MaxSessions bounds the sessions per token; 0 means
	// [DefaultMaxSessions].
	MaxSessions int
	// SessionWait bounds the wait for a session; 0 means
	// [DefaultSessionWait].
	SessionWait time.Duration
	// ReopenEvery is the least time between two attempts of a key to
	// open its token again (see Key); 0 means [DefaultReopenEvery].
	ReopenEvery time.Duration
	// SignTimeout bounds the wait for one signature; 0 means
	// [DefaultSignTimeout].
	SignTimeout time.Duration
}

// ReadPINFile reads a PIN from a file that neither group nor others may
// access (like a key file); one trailing newline is dropped. Errors name
// the file, never its content.
func ReadPINFile(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hsm: PIN file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("hsm: PIN file: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return "", fmt.Errorf("hsm: PIN file %s is not a regular file", path)
	}
	if perm := fi.Mode().Perm(); runtime.GOOS != "windows" && perm&0o077 != 0 {
		return "", fmt.Errorf("hsm: PIN file %s has mode %04o, so group or others may read it; run `chmod 600 %s`", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, maxPINFile+1))
	if err != nil {
		return "", fmt.Errorf("hsm: PIN file %s: %w", path, err)
	}
	defer clear(b)
	if len(b) > maxPINFile {
		return "", fmt.Errorf("hsm: PIN file %s is larger than %d bytes", path, maxPINFile)
	}
	pin := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	if pin == "" {
		return "", fmt.Errorf("hsm: PIN file %s is empty", path)
	}
	return pin, nil
}

// Keys opens keys in tokens; one logged-in session pool per token is kept
// until [Keys.Close]. It is safe for concurrent use.
type Keys struct {
	cfg    Config
	mu     sync.Mutex
	tokens map[tokenKey]*token
}

type tokenKey struct{ module, label, serial string }

// New returns a [Keys] reaching tokens as cfg says. Nothing is opened
// before the first key.
func New(cfg Config) *Keys {
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = DefaultMaxSessions
	}
	if cfg.SessionWait <= 0 {
		cfg.SessionWait = DefaultSessionWait
	}
	if cfg.ReopenEvery <= 0 {
		cfg.ReopenEvery = DefaultReopenEvery
	}
	if cfg.SignTimeout <= 0 {
		cfg.SignTimeout = DefaultSignTimeout
	}
	return &Keys{cfg: cfg, tokens: map[tokenKey]*token{}}
}

// resolve returns the module and PIN for u: the URI's own, else cfg's.
func (k *Keys) resolve(u *URI) (module, pin string, err error) {
	module = k.cfg.Module
	if u.ModulePath != "" {
		if module != "" && module != u.ModulePath {
			return "", "", fmt.Errorf("hsm: %s names module %s, but the configured module is %s", u, u.ModulePath, module)
		}
		module = u.ModulePath
	}
	if module == "" {
		return "", "", fmt.Errorf("hsm: %s: no PKCS#11 module configured (--pkcs11-module PATH or %s, or module-path in the URI)", u, EnvModule)
	}
	if fi, err := os.Stat(module); err != nil {
		return "", "", fmt.Errorf("hsm: PKCS#11 module: %w", err)
	} else if !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("hsm: PKCS#11 module %s is not a regular file", module)
	}
	switch {
	case u.PINValue != "":
		pin = u.PINValue
	case u.PINSource != "":
		if pin, err = ReadPINFile(u.PINSource); err != nil {
			return "", "", err
		}
	default:
		pin = k.cfg.PIN
	}
	if pin == "" {
		return "", "", fmt.Errorf("hsm: %s: no PIN (--pkcs11-pin-file FILE or %s, or pin-source in the URI)", u, EnvPIN)
	}
	return module, pin, nil
}

// redact returns err with every occurrence of pin replaced, for errors
// that come from the module and its wrappers, whose text this package
// does not control.
func redact(err error, pin string) error {
	if err == nil || pin == "" || !strings.Contains(err.Error(), pin) {
		return err
	}
	return redacted{msg: strings.ReplaceAll(err.Error(), pin, "***")}
}

type redacted struct{ msg string }

func (r redacted) Error() string { return r.msg }
