package cli

import (
	"crypto/tls"
	"net/http"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/pki"
)

// flagTLSCA names CA certificates to trust for https:// servers.
const flagTLSCA = "tls-ca"

func tlsCAFlag() ucli.Flag {
	return &ucli.StringSliceFlag{
		Name:    flagTLSCA,
		EnvVars: []string{"TEMPEL_TLS_CA"},
		Usage:   "trust the CA certificates in `FILE` (PEM) for https:// servers instead of the system roots (repeatable; a development server's is DATA-DIR/keys/root.pem)",
	}
}

// tlsConfigFrom returns the client TLS configuration for --tls-ca files:
// nil (the system roots) when none is given.
func tlsConfigFrom(files []string) (*tls.Config, error) {
	var named []string
	for _, f := range files {
		if f = strings.TrimSpace(f); f != "" {
			named = append(named, f)
		}
	}
	if len(named) == 0 {
		return nil, nil
	}
	pool, err := pki.LoadCertPool(named...)
	if err != nil {
		return nil, inputErrorf("--%s: %s", flagTLSCA, strings.TrimPrefix(err.Error(), "pki: "))
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// httpClient is an HTTP client for fetching files (the publications file)
// that trusts the --tls-ca files for https:// URLs.
func httpClient(files []string, timeout time.Duration) (*http.Client, error) {
	cfg, err := tlsConfigFrom(files)
	if err != nil {
		return nil, err
	}
	hc := &http.Client{Timeout: timeout}
	if cfg != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = cfg
		hc.Transport = tr
	}
	return hc, nil
}

// baseURL is the http(s) URL of a --server endpoint: https for
// https://HOST:PORT, http otherwise.
func baseURL(endpoint string) string {
	target, useTLS, err := client.ParseEndpoint(endpoint)
	if err != nil {
		// Endpoints are checked when parsed; keep the text for the error
		// the fetch will report.
		return "http://" + endpoint
	}
	if useTLS {
		return "https://" + target
	}
	return "http://" + target
}
