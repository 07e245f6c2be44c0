package cli

import (
	"crypto/x509"
	"encoding/asn1"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/webverify/page"
	"github.com/tempel-ksi/tempel/verifier"
)

// Flags of the verify-page command.
const (
	flagRoot     = "root"
	flagPageData = "data-dir"
)

const verifyPageDescription = `Writes the browser verifier as ONE self-contained HTML file (the
WebAssembly verifier embedded) that works opened from disk with the
network off: a person picks (or drops) a document and its signature and
reads whether it is verified, when it was signed, by whom, and against
what. The document never leaves the browser. It is the page that every
node serves at GET /verify, except that it makes no network request.

Trust, in the page: a publication string typed or pasted, or a
publications file the person picks, which must be signed by a publisher
certificate chaining to the root certificate the page was built with and
meeting the constraints (--cnstr).

The root is --root FILE, else DATA-DIR/keys/root.pem when it exists (the
development PKI of 'tempel serve --data-dir DATA-DIR'). The constraint is
--cnstr, else the e-mail address of DATA-DIR/keys/publisher.pem, which
must then chain to that root (a publisher of another PKI is refused:
give --cnstr). Without
any root the page trusts publication strings only (said on standard
error).

` + exitCodesHelp

func verifyPageCommand() *ucli.Command {
	return &ucli.Command{
		Name:        "verify-page",
		Usage:       "write the browser verifier as one HTML file that works offline",
		UsageText:   "tempel verify-page -o verify.html [--root FILE] [--cnstr E=ADDRESS] [--data-dir DIR]",
		Description: verifyPageDescription,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Required: true, Usage: "write the page to `PATH`"},
			&ucli.BoolFlag{Name: flagForce, Usage: "replace PATH if it exists"},
			&ucli.StringFlag{Name: flagRoot, Usage: "root certificate `FILE` (PEM) that publications files must chain to (default DATA-DIR/keys/root.pem when it exists)"},
			&ucli.StringSliceFlag{Name: flagCnstr, Usage: "required attribute of the publications file signer, `OID=VALUE` (repeatable; default the e-mail address of DATA-DIR/keys/publisher.pem)"},
			&ucli.StringFlag{Name: flagPageData, Value: defaultDataDir, EnvVars: []string{"TEMPEL_DATA_DIR"}, Usage: "the server's data `DIR`, for its root and publisher certificates"},
		},
		Action: runVerifyPage,
	}
}

func runVerifyPage(c *ucli.Context) error {
	opts, err := pageTrust(c.String(flagRoot), nonEmptyValues(c.StringSlice(flagCnstr)), filepath.Join(c.String(flagPageData), "keys"))
	if err != nil {
		return err
	}
	b, err := page.Page(opts)
	if err != nil {
		return inputErrorf("%s", trimPkg(err))
	}
	out := c.String(flagOutput)
	if err := writeNew(out, b, c.Bool(flagForce)); err != nil {
		return inputErrorf("cannot write %s: %v", out, err)
	}
	w := c.App.Writer
	fmt.Fprintf(w, "wrote %s (%d bytes): open it in a browser, no network needed\n", out, len(b))
	if len(opts.Root) == 0 {
		fmt.Fprintln(c.App.ErrWriter, "note: no root certificate (--root, or DATA-DIR/keys/root.pem): the page trusts typed publication strings only")
		return nil
	}
	fmt.Fprintf(w, "publications files must chain to the root it was built with and meet %v\n", opts.Constraints)
	return nil
}

// pageTrust finds the root and constraints the page is built with.
func pageTrust(root string, cnstr []string, keysDir string) (page.PageOptions, error) {
	var opts page.PageOptions
	explicit := root != ""
	if !explicit {
		root = filepath.Join(keysDir, "root.pem")
	}
	b, err := os.ReadFile(root)
	switch {
	case err != nil && !explicit && errors.Is(err, fs.ErrNotExist):
		if len(cnstr) > 0 {
			return opts, usageErrorf("--%s applies to a root certificate: add --%s FILE", flagCnstr, flagRoot)
		}
		return opts, nil
	case err != nil:
		return opts, inputErrorf("cannot read root certificate: %v", err)
	}
	roots, err := verifier.ParseCertificates(b)
	if err != nil {
		return opts, inputErrorf("%s is not a certificate: %s", root, trimPkg(err))
	}
	opts.Root = b
	if len(cnstr) == 0 {
		e, err := publisherEmail(filepath.Join(keysDir, "publisher.pem"), roots)
		if err != nil {
			return opts, usageErrorf("the page needs a constraint on the publications file's signer: add --%s E=ADDRESS (%v)", flagCnstr, err)
		}
		cnstr = []string{"E=" + e}
	}
	for _, s := range cnstr {
		if _, err := verifier.ParseConstraint(s); err != nil {
			return opts, usageErrorf("--%s: %s", flagCnstr, trimPkg(err))
		}
	}
	opts.Constraints = cnstr
	return opts, nil
}

// oidEmail is the emailAddress attribute (PKCS #9), what E= names.
var oidEmail = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}

// publisherEmail is the e-mail address in a publisher certificate's
// subject. The certificate must chain to one of roots: a publisher of
// another PKI (the data directory's, beside an explicit --root) says
// nothing about who signs the publications files of that root.
func publisherEmail(path string, roots []*x509.Certificate) (string, error) {
	certs, err := verifier.LoadCertificates(path)
	if err != nil {
		return "", err
	}
	if len(certs) == 0 {
		return "", fmt.Errorf("%s holds no certificate", path)
	}
	pool, inter := x509.NewCertPool(), x509.NewCertPool()
	for _, c := range roots {
		pool.AddCert(c)
	}
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	vo := x509.VerifyOptions{Roots: pool, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageAny}}
	if _, err := certs[0].Verify(vo); err != nil {
		return "", fmt.Errorf("%s does not chain to the page's root certificate: %v", path, err)
	}
	for _, n := range certs[0].Subject.Names {
		if v, ok := n.Value.(string); ok && n.Type.Equal(oidEmail) {
			return v, nil
		}
	}
	return "", fmt.Errorf("%s has no e-mail address in its subject", path)
}
