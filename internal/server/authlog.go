package server

import (
	"log/slog"
	"net"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

// DefaultAuthLogRate is how many refused authentications are logged per
// second by default; the rest are counted and the count is reported in the
// next line logged.
const DefaultAuthLogRate = 10

// AuthLog logs refused authentications at WARN with the login, the remote
// address, the interface and the route, never the key or the HMAC. It
// writes at most a fixed number of lines per second, so that an attacker
// trying keys cannot flood the log: the lines it drops are counted, and the
// next line it writes says how many ("suppressed").
type AuthLog struct {
	log   *slog.Logger
	limit int
	now   func() time.Time

	mu         sync.Mutex
	window     time.Time // start of the current one-second window
	inWindow   int       // lines written in it
	suppressed int       // lines dropped since the last one written
}

// NewAuthLog logs to log at most perSecond lines a second
// (DefaultAuthLogRate when perSecond <= 0).
func NewAuthLog(log *slog.Logger, perSecond int) *AuthLog {
	if perSecond <= 0 {
		perSecond = DefaultAuthLogRate
	}
	return &AuthLog{log: log, limit: perSecond, now: time.Now}
}

// Refused records one refused request. remote is the peer's address, a
// string or a net.Addr (formatted only if the refusal is logged: a flood
// of refusals is mostly dropped by the rate limit).
func (l *AuthLog) Refused(iface, route, login string, remote any, reason string) {
	l.mu.Lock()
	now := l.now()
	if now.Sub(l.window) >= time.Second || now.Before(l.window) {
		l.window, l.inWindow = now, 0
	}
	if l.inWindow >= l.limit {
		l.suppressed++
		l.mu.Unlock()
		return
	}
	l.inWindow++
	suppressed := l.suppressed
	l.suppressed = 0
	l.mu.Unlock()
	addr, _ := remote.(string)
	if a, ok := remote.(net.Addr); ok && a != nil {
		addr = a.String()
	}
	attrs := []any{"interface", iface, "login", printable(login), "remote", addr, "route", printable(route), "reason", reason}
	if suppressed > 0 {
		attrs = append(attrs, "suppressed", suppressed)
	}
	l.log.Warn("authentication refused", attrs...)
}

// printable bounds a caller-chosen string for the log.
func printable(s string) string {
	const max = 64
	if len(s) > max {
		s = s[:max] + "..."
	}
	return strings.ToValidUTF8(s, string(utf8.RuneError))
}
