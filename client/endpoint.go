package client

import (
	"crypto/tls"
	"fmt"
	"net"
	"strings"
)

// ParseEndpoint reads an endpoint of [Config.Endpoints]: "https://HOST:PORT"
// (TLS), "http://HOST:PORT" or "HOST:PORT" (plaintext). It returns the
// gRPC target HOST:PORT and whether the endpoint uses TLS. Other schemes,
// paths and a missing port are errors.
func ParseEndpoint(s string) (target string, useTLS bool, err error) {
	rest := s
	if scheme, r, ok := strings.Cut(s, "://"); ok {
		switch strings.ToLower(scheme) {
		case "https":
			useTLS = true
		case "http":
		default:
			return "", false, fmt.Errorf("client: endpoint %q: scheme %q, want https:// (TLS), http:// or none (plaintext)", s, scheme)
		}
		rest = strings.TrimSuffix(r, "/")
	}
	if strings.ContainsAny(rest, "/?#@") {
		return "", false, fmt.Errorf("client: endpoint %q: want HOST:PORT with no path", s)
	}
	host, port, err := net.SplitHostPort(rest)
	if err != nil || port == "" {
		return "", false, fmt.Errorf("client: endpoint %q: want HOST:PORT (%v)", s, err)
	}
	if host == "" {
		return "", false, fmt.Errorf("client: endpoint %q: no host", s)
	}
	return rest, useTLS, nil
}

// tlsConfig is the client side of a TLS endpoint: base (cloned) or, when
// nil, the system roots; at least TLS 1.2.
func tlsConfig(base *tls.Config) *tls.Config {
	var c *tls.Config
	if base != nil {
		c = base.Clone()
	} else {
		c = &tls.Config{}
	}
	if c.MinVersion < tls.VersionTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	return c
}
