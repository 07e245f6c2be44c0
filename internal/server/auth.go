package server

import (
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/pdu"
)

// Interfaces a request arrives on, as the authentication log names them.
const (
	IfaceGRPC = "grpc" // native gRPC
	IfaceREST = "rest" // REST through the gateway
	IfacePDU  = "pdu"  // KSI PDU v2 over HTTP
	IfaceHTTP = "http" // other HTTP routes: publications file, metrics, health
)

// Access is what a route asks of its callers.
type Access int

const (
	// NeedCredentials: Basic credentials of a user (none are needed in
	// development mode). The zero value, so a route nobody classified is
	// not public.
	NeedCredentials Access = iota
	// Public: anyone, credentials are not even looked at.
	Public
	// NeedHMAC: a KSI PDU whose HMAC is made with a user's key.
	NeedHMAC
)

// Errors of [Authenticator.Authenticate]. Callers answer every one of
// them as an authentication failure (gRPC Unauthenticated, HTTP 401, PDU
// 0x102); the message never says whether the login or the key was wrong.
var (
	ErrAuth      = errors.New("authentication failed")
	ErrNoAuth    = errors.New("authentication required: send the credentials of a user")
	ErrWeakHMAC  = errors.New("HMAC algorithm refused")
	errMalformed = fmt.Errorf("%w (malformed credentials)", ErrAuth)
)

// Bounds on what a Basic credentials value may hold.
const (
	maxLogin      = 256
	maxAuthHeader = 1024
)

// AuthRequest is what an authentication decision is made from.
type AuthRequest struct {
	Interface string // IfaceGRPC, IfaceREST, IfacePDU or IfaceHTTP
	Route     string // gRPC full method name or HTTP path
	Remote    string // the peer's address
	// RemoteAddr is the peer's address when Remote is empty: it is
	// formatted only if the request is refused, off the path of every
	// call that passes.
	RemoteAddr net.Addr
	// Authorization is the Basic credentials as sent (gRPC metadata or
	// HTTP header); empty when none were sent. More than one value is
	// refused.
	Authorization []string
	// PDU is the envelope of a KSI PDU request, authenticated by its HMAC.
	PDU *pdu.Envelope
}

// Identity is who an authenticated caller is.
type Identity struct {
	// Login is the user's login, "anonymous" for a call without
	// credentials in development mode or on a public route.
	Login string
	// Key is the user's key for a PDU request: the response's HMAC is
	// made with it.
	Key []byte
}

// Anonymous is the login of a caller without credentials.
const Anonymous = "anonymous"

// AuthConfig configures an [Authenticator].
type AuthConfig struct {
	Users *Users
	// Access classifies routes; nil means every route needs credentials
	// (or a PDU HMAC, for a request that carries a PDU).
	Access func(iface, route string) Access
	// AllowWeakHMAC accepts PDU HMACs made with algorithms shorter than
	// SHA-256 (SHA-1, RIPEMD-160, SHA3-224), which are refused otherwise.
	AllowWeakHMAC bool
	// Log receives the refusals (rate-limited); nil: they are not logged.
	Log *AuthLog
	// Refused, when set, counts every refusal (the log drops some) by
	// interface and reason, a short fixed phrase.
	Refused func(iface, reason string)
}

// Authenticator is the one place that decides who a caller is, for every
// interface: the gRPC interceptors, the HTTP middleware in front of REST,
// metrics and the publications file, and the PDU handlers' HMAC check all
// call [Authenticator.Authenticate], so a refusal is decided, logged and
// rate-limited the same way wherever it happens.
type Authenticator struct {
	cfg AuthConfig
}

// NewAuthenticator returns an authenticator for cfg.
func NewAuthenticator(cfg AuthConfig) *Authenticator {
	if cfg.Users == nil {
		cfg.Users = DevUsers()
	}
	return &Authenticator{cfg: cfg}
}

// Dev reports development mode.
func (a *Authenticator) Dev() bool { return a.cfg.Users.Dev() }

// Access returns what a route asks of its callers.
func (a *Authenticator) Access(iface, route string) Access {
	if a.cfg.Access == nil {
		if iface == IfacePDU {
			return NeedHMAC
		}
		return NeedCredentials
	}
	return a.cfg.Access(iface, route)
}

// Authenticate decides who the caller of req is, or refuses it. A refusal
// is logged (at WARN, rate-limited) with the login, the remote address and
// the interface, never with the key or the HMAC.
func (a *Authenticator) Authenticate(req AuthRequest) (Identity, error) {
	id, login, reason, err := a.decide(req)
	if err == nil {
		return id, nil
	}
	if a.cfg.Refused != nil {
		a.cfg.Refused(req.Interface, reason)
	}
	if a.cfg.Log != nil {
		var remote any = req.Remote
		if req.Remote == "" && req.RemoteAddr != nil {
			remote = req.RemoteAddr
		}
		a.cfg.Log.Refused(req.Interface, req.Route, login, remote, reason)
	}
	return id, err
}

// decide is Authenticate without the log; reason says why a request was
// refused, for the operator only.
func (a *Authenticator) decide(req AuthRequest) (id Identity, login, reason string, err error) {
	switch a.Access(req.Interface, req.Route) {
	case Public:
		return Identity{Login: Anonymous}, "", "", nil
	case NeedHMAC:
		return a.decidePDU(req.PDU)
	}
	if len(req.Authorization) == 0 {
		if a.Dev() {
			return Identity{Login: Anonymous}, "", "", nil
		}
		return Identity{}, "", "no credentials", ErrNoAuth
	}
	login, key, ok := basicAuth(req.Authorization)
	if !ok {
		return Identity{}, login, "malformed credentials", errMalformed
	}
	switch known, match := a.cfg.Users.check(login, key); {
	case match:
		return Identity{Login: login}, login, "", nil
	case !known:
		return Identity{}, login, "unknown login", ErrAuth
	}
	return Identity{}, login, "wrong key", ErrAuth
}

func (a *Authenticator) decidePDU(env *pdu.Envelope) (id Identity, login, reason string, err error) {
	if env == nil || env.HMAC == nil {
		return Identity{}, "", "no HMAC", ErrNoAuth
	}
	login = env.Header.LoginID
	alg := env.HMAC.Alg()
	if weakHMAC(alg) && !a.cfg.AllowWeakHMAC {
		return Identity{}, login, "weak HMAC algorithm " + alg.String(),
			fmt.Errorf("%w: %s is weaker than SHA-256; make the HMAC with SHA-256 or stronger", ErrWeakHMAC, alg)
	}
	key, known := a.cfg.Users.Key(login)
	if !known {
		// Spend the same work as a real check before refusing.
		env.Verify([]byte("\x00unknown-user"))
		return Identity{}, login, "unknown login", ErrAuth
	}
	if err := env.Verify(key); err != nil {
		reason = "wrong HMAC"
		if !errors.Is(err, pdu.ErrHMAC) {
			reason = "HMAC not computable: " + alg.String()
		}
		return Identity{}, login, reason, ErrAuth
	}
	return Identity{Login: login, Key: key}, login, "", nil
}

// weakHMAC reports whether alg is too short for an HMAC accepted by
// default: SHA-1, RIPEMD-160 and SHA3-224 (SHA-256 and longer pass).
func weakHMAC(alg ksi.HashAlg) bool { return alg.Size() < 32 }

// AuthenticatePDU authenticates a PDU request through the same decision
// as every other request; it returns the user's key for the response's
// HMAC.
func (a *Authenticator) AuthenticatePDU(r *http.Request, env *pdu.Envelope) ([]byte, error) {
	id, err := a.Authenticate(AuthRequest{Interface: IfacePDU, Route: r.URL.Path, Remote: r.RemoteAddr, PDU: env})
	return id.Key, err
}

// PDUAuthenticator authenticates KSI PDU requests by their HMAC.
type PDUAuthenticator interface {
	AuthenticatePDU(r *http.Request, env *pdu.Envelope) (key []byte, err error)
}

// AuthenticatePDU makes a plain set of users a PDUAuthenticator (strong
// HMACs only, no log), for handlers used on their own.
func (u *Users) AuthenticatePDU(r *http.Request, env *pdu.Envelope) ([]byte, error) {
	return NewAuthenticator(AuthConfig{Users: u}).AuthenticatePDU(r, env)
}

// basicAuth parses Basic credentials. A malformed value still yields the
// login when it can be read, for the log.
func basicAuth(v []string) (login, key string, ok bool) {
	if len(v) != 1 || len(v[0]) > maxAuthHeader {
		return "", "", false
	}
	scheme, raw, found := strings.Cut(v[0], " ")
	if !found || !strings.EqualFold(scheme, "Basic") {
		return "", "", false
	}
	b, err := base64.StdEncoding.DecodeString(strings.TrimSpace(raw))
	if err != nil {
		return "", "", false
	}
	login, key, ok = strings.Cut(string(b), ":")
	return login, key, ok && login != "" && len(login) <= maxLogin
}
