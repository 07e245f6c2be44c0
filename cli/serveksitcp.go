package cli

import (
	"fmt"
	"io"
	"net"

	"github.com/tempel-ksi/tempel/internal/node"
)

// checkKSITCPListen applies the rule of --listen to --ksi-tcp-listen,
// before anything is created: plaintext off loopback only with
// --insecure-listen (an address without a host is every interface).
func checkKSITCPListen(cfg node.Config, insecureOK bool) error {
	if cfg.KSITCPListen == "" || cfg.TLS.Enabled() || insecureOK {
		return nil
	}
	addr, err := net.ResolveTCPAddr("tcp", cfg.KSITCPListen)
	if err != nil {
		return usageErrorf("--ksi-tcp-listen %s: %v", cfg.KSITCPListen, err)
	}
	if addr.IP.IsLoopback() {
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
