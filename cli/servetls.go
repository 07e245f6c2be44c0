package cli

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"strings"

	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/pki"
)

// checkPlaintextListen refuses plaintext off loopback: every gRPC and
// REST call carries its user's key, which must not cross a network in the
// clear unless the operator says so.
func checkPlaintextListen(given string, addr net.Addr, useTLS, insecureOK bool) error {
	if useTLS || insecureOK {
		return nil
	}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return nil
	}
	return usageErrorf("--listen %s (%s) is not a loopback address, and without TLS every credential would cross the network in the clear: "+
		"add --tls-cert FILE --tls-key FILE (or --tls for the development certificate), or --insecure-listen to serve plaintext anyway", given, addr)
}

// publicURL is the base URL clients reach a server at by default.
func publicURL(addr net.Addr, useTLS bool) string {
	if useTLS {
		return "https://" + addr.String()
	}
	return "http://" + addr.String()
}

// printTLSBanner tells a newcomer how clients reach a TLS server.
func printTLSBanner(w io.Writer, n *node.Node, base string) {
	cert := n.TLSCertFile()
	if cert == "" {
		return
	}
	fmt.Fprintf(w, "  TLS:                certificate %s\n", cert)
	if filepath.Base(cert) == pki.TLSCertFile {
		root := filepath.Join(filepath.Dir(cert), pki.RootCertFile)
		fmt.Fprintf(w, "  clients:            --server %s --tls-ca %s\n", strings.TrimSuffix(base, "/"), root)
	}
}

// nonEmpty returns s as a one-element list, or none when it is empty.
func nonEmpty(s string) []string {
	if s == "" {
		return nil
	}
	return []string{s}
}
