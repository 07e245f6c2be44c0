package cli

import (
	"crypto"
	"fmt"
	"os"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/hsm"
	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/internal/pki"
)

// pkcs11Flags say how to reach the PKCS#11 token of keys given as
// pkcs11: URIs (--calendar-key, --publisher-key, --tsa-key). The PIN has
// no flag of its own, so that it never shows in a process list: it comes
// from a file or the environment.
func pkcs11Flags(env func(string) []string) []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "pkcs11-module", Usage: "PKCS#11 library (`PATH`, e.g. /usr/lib/softhsm/libsofthsm2.so) for keys given as pkcs11: URIs (RFC 7512)", EnvVars: env("pkcs11-module")},
		&ucli.StringFlag{Name: "pkcs11-pin-file", Usage: "`FILE` (mode 0600) holding the token's user PIN; else $" + hsm.EnvPIN + ", or pin-source/pin-value in the URI", EnvVars: env("pkcs11-pin-file")},
	}
}

// pkcs11PIN reads the PIN of --pkcs11-pin-file or $TEMPEL_PKCS11_PIN;
// empty when neither is set (a URI may bring its own).
func pkcs11PIN(c *ucli.Context) (string, error) {
	file, envPIN := c.String("pkcs11-pin-file"), os.Getenv(hsm.EnvPIN)
	if file != "" && envPIN != "" {
		return "", usageErrorf("--pkcs11-pin-file and $%s are both set; give the PIN one way", hsm.EnvPIN)
	}
	if file == "" {
		return envPIN, nil
	}
	pin, err := hsm.ReadPINFile(file)
	if err != nil {
		return "", inputErrorf("%v", err)
	}
	return pin, nil
}

// hsmConfig gives cfg a key opener when a key flag is a pkcs11: URI. The
// returned function closes the tokens; call it after the node is closed.
func hsmConfig(c *ucli.Context, cfg *node.Config) (func(), error) {
	uses := false
	for _, name := range []string{"calendar-key", "publisher-key", "tsa-key"} {
		if pki.IsKeyURI(c.String(name)) {
			uses = true
			if name != "tsa-key" && cfg.Keys.CalendarCert == "" {
				return nil, usageErrorf("--%s pkcs11:... goes with the operator's certificates: --root-cert, --calendar-cert, --publisher-cert (tempel keys hsm-init writes them)", name)
			}
		}
	}
	if !uses {
		return func() {}, nil
	}
	if err := pinOnCommandLine(os.Args); err != nil {
		return nil, err
	}
	pin, err := pkcs11PIN(c)
	if err != nil {
		return nil, err
	}
	keys := hsm.New(hsm.Config{Module: c.String("pkcs11-module"), PIN: pin})
	cfg.Keys.OpenKey = func(uri string) (crypto.Signer, error) {
		k, err := keys.Open(uri)
		if err == nil && cfg.Logger != nil {
			// The key's String is its URI without any PIN.
			cfg.Logger.Info("signing key in a PKCS#11 token", "key", fmt.Sprint(k))
		}
		return k, err
	}
	return func() { keys.Close() }, nil
}

// pinOnCommandLine refuses a pin-value attribute in a URI on the command
// line: the process list shows it to every local user, and so does
// /debug/pprof/cmdline with --pprof. The error does not quote it.
func pinOnCommandLine(args []string) error {
	for _, a := range args {
		if strings.Contains(strings.ToLower(a), "pin-value=") {
			return usageErrorf("a pkcs11: URI on the command line carries pin-value=..., which every local user can read in the process list; give the PIN with --pkcs11-pin-file FILE, $%s, or pin-source=FILE in the URI (the same URI in a --config file or an environment variable is not refused)", hsm.EnvPIN)
		}
	}
	return nil
}
