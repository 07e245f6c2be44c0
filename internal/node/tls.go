package node

import (
	"crypto/tls"
	"fmt"
	"path/filepath"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/internal/server"
)

// TLSConfig is how a node serves and reaches its parent over TLS.
type TLSConfig struct {
	// CertFile and KeyFile are the server's certificate chain and key
	// (PEM; the key mode 0600). Dev instead uses DATA-DIR/keys/tls.pem,
	// issued from the development PKI.
	CertFile, KeyFile string
	Dev               bool
	// ClientCAFile, when set, requires client certificates issued by
	// these CAs (RequireAndVerifyClientCert).
	ClientCAFile string
	// AllowTLS12 accepts TLS 1.2 clients; the default minimum is 1.3.
	AllowTLS12 bool

	// UpstreamCAFiles are the roots trusted for an https:// upstream
	// (none: the system roots); UpstreamCertFile and UpstreamKeyFile a
	// client certificate to present there.
	UpstreamCAFiles                   []string
	UpstreamCertFile, UpstreamKeyFile string
}

// Enabled reports whether the node serves TLS.
func (t TLSConfig) Enabled() bool { return t.Dev || t.CertFile != "" || t.KeyFile != "" }

// serverTLS builds the server's TLS configuration (nil without TLS). In
// development mode it issues the certificate from the development PKI
// when it is missing, creating that PKI first if the node has none.
func (n *Node) serverTLS() (*tls.Config, error) {
	t := n.cfg.TLS
	if !t.Enabled() {
		if t.ClientCAFile != "" {
			return nil, fmt.Errorf("tls: --tls-client-ca needs TLS (--tls, or --tls-cert and --tls-key)")
		}
		return nil, nil
	}
	certFile, keyFile := t.CertFile, t.KeyFile
	switch {
	case t.Dev && (certFile != "" || keyFile != ""):
		return nil, fmt.Errorf("tls: --tls uses the development certificate; give it or --tls-cert and --tls-key, not both")
	case t.Dev && n.cfg.Keys.CalendarCert != "":
		return nil, fmt.Errorf("tls: --tls issues a certificate from the development PKI; with operator keys give --tls-cert and --tls-key")
	case t.Dev:
		dir := filepath.Join(n.cfg.DataDir, "keys")
		// The development PKI, made here when the node has no calendar
		// that made it already.
		if _, _, err := pki.LoadOrInit(dir, pki.InitOptions{TLSHosts: pki.DevTLSHosts}); err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		var issued bool
		var err error
		certFile, keyFile, issued, err = pki.EnsureDevTLS(dir)
		if err != nil {
			return nil, fmt.Errorf("tls: --tls: %w", err)
		}
		if issued {
			n.log.Info("issued a development TLS certificate", "cert", certFile, "hosts", pki.DevTLSHosts)
		}
	case certFile == "" || keyFile == "":
		return nil, fmt.Errorf("tls: --tls-cert and --tls-key go together")
	}
	cert, err := pki.LoadTLSKeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	n.tlsCert = certFile
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS13}
	if t.AllowTLS12 {
		c.MinVersion = tls.VersionTLS12
	}
	if t.ClientCAFile != "" {
		pool, err := pki.LoadCertPool(t.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("tls: client CA: %w", err)
		}
		c.ClientCAs = pool
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// upstreamDial returns the gRPC target and dial options for the parent:
// TLS for https://, plaintext otherwise.
func upstreamDial(cfg Config) (string, []grpc.DialOption, error) {
	target, useTLS, err := client.ParseEndpoint(cfg.Upstream)
	if err != nil {
		return "", nil, err
	}
	t := cfg.TLS
	if !useTLS {
		if len(t.UpstreamCAFiles) > 0 || t.UpstreamCertFile != "" {
			return "", nil, fmt.Errorf("upstream %s is plaintext: --upstream-tls-* need --upstream https://HOST:PORT", cfg.Upstream)
		}
		return target, []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if len(t.UpstreamCAFiles) > 0 {
		if c.RootCAs, err = pki.LoadCertPool(t.UpstreamCAFiles...); err != nil {
			return "", nil, fmt.Errorf("upstream CA: %w", err)
		}
	}
	if t.UpstreamCertFile != "" || t.UpstreamKeyFile != "" {
		cert, err := pki.LoadTLSKeyPair(t.UpstreamCertFile, t.UpstreamKeyFile)
		if err != nil {
			return "", nil, fmt.Errorf("upstream client certificate: %w", err)
		}
		c.Certificates = []tls.Certificate{cert}
	}
	return target, []grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(c))}, nil
}

// TLSCertFile is the certificate the node serves TLS with ("" when it
// serves plaintext).
func (n *Node) TLSCertFile() string { return n.tlsCert }

// transportCreds gives the gRPC server the TLS state of the connections
// [server.Serve] has handshaken; without TLS it changes nothing.
func (n *Node) transportCreds() grpc.ServerOption {
	if n.tls == nil {
		return grpc.EmptyServerOption{}
	}
	return grpc.Creds(server.GRPCCredentials())
}
