package cli

import (
	"crypto"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/hsm"
	"github.com/tempel-ksi/tempel/internal/pki"
)

// hsmKeyBits is the size of the RSA keys made in a token: what the
// development PKI gives its own calendar and publisher keys.
const hsmKeyBits = pki.CalendarKeyBits

func keysHSMInitCommand(dataDir ucli.Flag) *ucli.Command {
	return &ucli.Command{
		Name:  "hsm-init",
		Usage: "make the calendar, publisher and TSA keys inside a PKCS#11 token and certify them with the development root",
		Description: "Generates RSA-2048 key pairs in the token (sensitive, not extractable, sign only),\n" +
			"labelled PREFIXcalendar, PREFIXpublisher and PREFIXtsa, and issues their certificates with\n" +
			"DATA-DIR/keys/root.key into --out (root.pem, calendar.pem, publisher.pem, tsa.pem). Without\n" +
			"root.key (kept offline) it writes certificate requests (*.csr) for the root's holder instead.\n" +
			"It prints the pkcs11: URIs and the tempel serve flags that use them.",
		Flags: append([]ucli.Flag{dataDir,
			&ucli.StringFlag{Name: "token", Usage: "`LABEL` of the (initialized) token to make the keys in", Required: true},
			&ucli.StringFlag{Name: "out", Usage: "`DIR` for the certificates or requests (default DATA-DIR/hsm)"},
			&ucli.StringFlag{Name: "label-prefix", Value: "tempel-", Usage: "prefix of the keys' object labels"},
			&ucli.BoolFlag{Name: "tsa", Value: true, Usage: "also make the RFC 3161 TSA key (--tsa=false: only calendar and publisher)"},
			&ucli.StringFlag{Name: "email", Value: pki.DefaultEmail, Usage: "e-mail address in the publisher certificate (what verifiers pin with --cnstr E=...)"},
			&ucli.StringFlag{Name: "org", Value: pki.DefaultOrganization, Usage: "organization name in the certificates"},
		}, pkcs11Flags(func(name string) []string {
			return []string{"TEMPEL_" + strings.ToUpper(strings.ReplaceAll(name, "-", "_"))}
		})...),
		Action: keysHSMInit,
	}
}

// hsmKey is one key to make in the token.
type hsmKey struct {
	name, flag string // file base name, serve flag
	uri        string
	key        crypto.Signer
	prot       hsm.Protection
}

func keysHSMInit(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("keys hsm-init takes no arguments, got %q", c.Args().First())
	}
	module, label := c.String("pkcs11-module"), c.String("token")
	if module == "" {
		return usageErrorf("--pkcs11-module PATH (or $%s) is required", hsm.EnvModule)
	}
	pin, err := pkcs11PIN(c)
	if err != nil {
		return err
	}
	if pin == "" {
		return usageErrorf("no PIN: --pkcs11-pin-file FILE or $%s", hsm.EnvPIN)
	}
	keysDir := filepath.Join(c.String("data-dir"), "keys")
	out := c.String("out")
	if out == "" {
		out = filepath.Join(c.String("data-dir"), "hsm")
	}
	want := []*hsmKey{{name: "calendar", flag: "calendar-key"}, {name: "publisher", flag: "publisher-key"}}
	if c.Bool("tsa") {
		want = append(want, &hsmKey{name: "tsa", flag: "tsa-key"})
	}
	opts := pki.InitOptions{Email: c.String("email"), Organization: c.String("org")}
	withRoot := fileExists(filepath.Join(keysDir, pki.RootKeyFile))
	if err := checkOutFiles(out, want, withRoot); err != nil {
		return err
	}

	tok := hsm.New(hsm.Config{Module: module, PIN: pin})
	defer tok.Close()
	for _, k := range want {
		k.uri = hsm.Scheme + "token=" + uriEscape(label) + ";object=" + uriEscape(c.String("label-prefix")+k.name) + ";type=private"
		if k.key, err = tok.Generate(k.uri, hsmKeyBits); err != nil {
			return inputErrorf("%v", err)
		}
		// What the token says, not what was asked for: a token that
		// ignored the attributes would leave a key that can be copied.
		if k.prot, err = hsm.KeyProtection(k.key); err != nil {
			return inputErrorf("%v", err)
		}
		if !k.prot.Sensitive || k.prot.Extractable || !k.prot.ExportRefused {
			return inputErrorf("keys: token %q made %s extractable or readable (%+v); do not use it", label, k.uri, k.prot)
		}
	}
	tk := pki.TokenKeys{Calendar: want[0].key, Publisher: want[1].key}
	if len(want) > 2 {
		tk.TSA = want[2].key
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return inputErrorf("%v", err)
	}
	if withRoot {
		err = writeHSMCerts(out, keysDir, opts, tk)
	} else {
		err = writeHSMRequests(out, opts, tk)
	}
	if err != nil {
		return err
	}
	printHSMInit(c, module, out, want, withRoot)
	return nil
}

// checkOutFiles refuses before any key is made when an output file is
// already there.
func checkOutFiles(out string, want []*hsmKey, withRoot bool) error {
	var names []string
	if withRoot {
		names = append(names, pki.RootCertFile)
	}
	for _, k := range want {
		if withRoot {
			names = append(names, k.name+".pem")
		} else {
			names = append(names, k.name+".csr")
		}
	}
	for _, n := range names {
		if p := filepath.Join(out, n); fileExists(p) {
			return usageErrorf("%s already exists; refusing to overwrite it (choose another --out)", p)
		}
	}
	return nil
}

func writeHSMCerts(out, keysDir string, opts pki.InitOptions, tk pki.TokenKeys) error {
	iss, err := pki.IssueForKeys(keysDir, opts, tk)
	if err != nil {
		return inputErrorf("%v", err)
	}
	files := map[string][]byte{pki.RootCertFile: certPEM(iss.Root.Raw), "calendar.pem": certPEM(iss.Calendar.Raw), "publisher.pem": certPEM(iss.Publisher.Raw)}
	if iss.TSA != nil {
		files["tsa.pem"] = certPEM(iss.TSA.Raw)
	}
	return writeOutFiles(out, files)
}

func writeHSMRequests(out string, opts pki.InitOptions, tk pki.TokenKeys) error {
	reqs, err := pki.CertificateRequests(opts, tk)
	if err != nil {
		return inputErrorf("%v", err)
	}
	files := map[string][]byte{}
	for name, b := range reqs {
		files[name+".csr"] = b
	}
	return writeOutFiles(out, files)
}

func writeOutFiles(out string, files map[string][]byte) error {
	for name, b := range files {
		if err := writeNew(filepath.Join(out, name), b, false); err != nil {
			if errors.Is(err, os.ErrExist) {
				return usageErrorf("%v", err)
			}
			return inputErrorf("%v", err)
		}
	}
	return nil
}

func certPEM(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// uriEscape percent-encodes what RFC 7512 does not allow bare in a path
// attribute value.
func uriEscape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		ch := s[i]
		if ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.IndexByte("-._~", ch) >= 0 {
			b.WriteByte(ch)
		} else {
			fmt.Fprintf(&b, "%%%02X", ch)
		}
	}
	return b.String()
}

func printHSMInit(c *ucli.Context, module, out string, keys []*hsmKey, withRoot bool) {
	w := c.App.Writer
	for _, k := range keys {
		fmt.Fprintf(w, "%-10s key: %s\n", k.name, k.uri)
		fmt.Fprintf(w, "           in the token: sensitive=%t extractable=%t never-extractable=%t, private exponent refused=%t\n",
			k.prot.Sensitive, k.prot.Extractable, k.prot.NeverExtractable, k.prot.ExportRefused)
	}
	if !withRoot {
		fmt.Fprintf(w, "certificate requests in %s (*.csr): have them issued under your root, then pass the certificates with the flags below\n", out)
	}
	fmt.Fprintf(w, "start the service with (PIN from --pkcs11-pin-file FILE or $%s):\n", hsm.EnvPIN)
	root, cert := filepath.Join(out, pki.RootCertFile), func(name string) string { return filepath.Join(out, name+".pem") }
	if !withRoot {
		root, cert = "ROOT.pem", func(name string) string { return strings.ToUpper(name) + ".pem" }
	}
	fmt.Fprintf(w, "  tempel serve --pkcs11-module %s --root-cert %s", module, root)
	for _, k := range keys {
		fmt.Fprintf(w, " --%s-cert %s --%s '%s'", k.name, cert(k.name), k.flag, k.uri)
	}
	fmt.Fprintln(w)
}
