package server

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"time"

	"google.golang.org/grpc/credentials"
)

// TLS application protocols (ALPN ids).
const (
	alpnHTTP1 = "http/1.1"
	alpnH2    = "h2"
)

// TLSConfig returns the server side of base as [Serve] uses it: at least
// TLS 1.3 unless base asks for less (never below 1.2), and ALPN that
// tells gRPC apart from everything else.
//
// Go's server picks the first of its protocols the client offers, so
// "http/1.1" is chosen whenever the client offers it (curl, browsers,
// Go's http.Client, libcurl-based tools such as ksi-tool, which all offer
// "h2" too) and "h2" only for clients that offer nothing else: gRPC
// clients (grpc-go, grpc-java, C-core, grpc-js). A client that offers no
// ALPN at all is served HTTP/1.1.
func TLSConfig(base *tls.Config) *tls.Config {
	c := base.Clone()
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS13
	}
	c.NextProtos = []string{alpnHTTP1, alpnH2}
	return c
}

// tlsRoute is how [route] serves TLS. The handshake runs in route's
// goroutine, off the accept loop, so a slow client never holds up Accept.
type tlsRoute struct {
	config  *tls.Config
	log     *slog.Logger
	timeout time.Duration // the handshake's bound
}

// routeTLS completes the handshake within timeout and hands
// the connection on by its negotiated protocol: "h2" to the gRPC server,
// anything else to the HTTP/1.1 server. Both get the *tls.Conn itself, so
// net/http fills Request.TLS and gRPC handlers see [credentials.TLSInfo].
func routeTLS(c *tls.Conn, grpcL, httpL *chanListener, log *slog.Logger, timeout time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c.SetDeadline(time.Now().Add(timeout))
	err := c.HandshakeContext(ctx)
	c.SetDeadline(time.Time{})
	if err != nil {
		// Scanners and wrong clients make these all day: not worth more
		// than a debug line.
		log.Debug("server: TLS handshake failed", "remote", c.RemoteAddr().String(), "err", err)
		c.Close()
		return
	}
	if c.ConnectionState().NegotiatedProtocol == alpnH2 {
		grpcL.deliver(c)
		return
	}
	httpL.deliver(c)
}

// handshakenCreds are the gRPC server's transport credentials for
// connections [routeTLS] has already handshaken: ServerHandshake passes
// the connection through and reports its TLS state, so handlers find
// [credentials.TLSInfo] in their peer. Plaintext connections pass through
// with no auth info, as with insecure credentials.
type handshakenCreds struct{}

// GRPCCredentials returns the transport credentials a gRPC server behind
// [Serve] must be built with (grpc.Creds) when Options.TLS is set.
func GRPCCredentials() credentials.TransportCredentials { return handshakenCreds{} }

func (handshakenCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	tc, ok := c.(*tls.Conn)
	if !ok {
		return c, nil, nil
	}
	return c, credentials.TLSInfo{
		State:          tc.ConnectionState(),
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
	}, nil
}

func (handshakenCreds) ClientHandshake(context.Context, string, net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("server: handshaken credentials are for the server side only")
}

func (handshakenCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls"}
}

func (h handshakenCreds) Clone() credentials.TransportCredentials { return h }

func (handshakenCreds) OverrideServerName(string) error { return nil }
