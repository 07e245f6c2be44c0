package server

import "time"

// Default connection timeouts (see [Options]).
const (
	// DefaultReadTimeout bounds reading one HTTP/1.1 request, headers and
	// body, and the HTTP/2 handshake of a new gRPC connection. Tempel's
	// largest request (a PDU) is 1 MiB at most: 30 s is generous for any
	// client that sends, and short for one that drips. It does not cut a
	// slow answer: net/http lifts the read deadline once the body is read.
	DefaultReadTimeout = 30 * time.Second
	// DefaultWriteTimeout bounds an HTTP/1.1 answer from the end of its
	// request's headers: well above a signing wait (a round and a
	// calendar second, 1-2 s) and a 30 s pprof profile.
	DefaultWriteTimeout = time.Minute
	// DefaultIdleTimeout closes connections that carry no request: a
	// keep-alive HTTP/1.1 connection between requests, a gRPC connection
	// with no call in progress.
	DefaultIdleTimeout = 5 * time.Minute
	// DefaultTLSHandshakeTimeout bounds a TLS handshake (a shorter read
	// timeout lowers it).
	DefaultTLSHandshakeTimeout = 10 * time.Second
)

// withDefaults fills the limits left at zero.
func (o Options) withDefaults() Options {
	if o.MaxConns == 0 {
		o.MaxConns = DefaultMaxConns
	}
	if o.ReadTimeout == 0 {
		o.ReadTimeout = DefaultReadTimeout
	}
	if o.WriteTimeout == 0 {
		o.WriteTimeout = DefaultWriteTimeout
	}
	if o.IdleTimeout == 0 {
		o.IdleTimeout = DefaultIdleTimeout
	}
	if o.TLSHandshakeTimeout == 0 {
		o.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	return o
}
