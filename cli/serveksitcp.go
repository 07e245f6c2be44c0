package cli

import (
	"fmt"
	"io"
	"net"

	"github.com/tempel-ksi/tempel/internal/node"
)

// checkKSITCPListen applies the rule of --listen to --ksi-tcp-listen:
// plaintext off loopback only with --insecure-listen.
func checkKSITCPListen(n *node.Node, cfg node.Config, insecureOK bool) error {
	addr := n.KSITCPAddr()
	if addr == nil || cfg.TLS.Enabled() || insecureOK {
		return nil
	}
	if ta, ok := addr.(*net.TCPAddr); ok && ta.IP.IsLoopback() {
		return nil
	}
	return usageErrorf("--ksi-tcp-listen %s (%s) is not a loopback address, and without TLS every PDU would cross the network in the clear: "+
		"add --tls-cert FILE --tls-key FILE (or --tls for the development certificate), or --insecure-listen to serve plaintext anyway", cfg.KSITCPListen, addr)
}

// printKSITCPBanner tells where ksi+tcp clients connect.
func printKSITCPBanner(w io.Writer, n *node.Node) {
	if a := n.KSITCPAddr(); a != nil {
		over := ""
		if n.TLSCertFile() != "" {
			over = " (TLS)"
		}
		fmt.Fprintf(w, "  KSI PDU v2 raw TCP: ksi+tcp://%s%s\n", a, over)
	}
}
