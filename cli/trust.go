package cli

import (
	"context"
	"crypto/x509"
	"net/http"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// Names of the publications-file trust flags, shared by every command
// that reads a publications file.
const (
	flagPubfile         = "pubfile"
	flagTrustRoot       = "trust-root"
	flagCnstr           = "cnstr"
	flagPubfileNoVerify = "pubfile-no-verify"
)

// trustFlags are the flags that name a publications file and say why to
// believe it.
func trustFlags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{
			Name:    flagPubfile,
			EnvVars: []string{"TEMPEL_PUBFILE"},
			Usage:   "`PATH|URL` of the publications file (URLs: http://, https://, file://)",
		},
		&ucli.StringSliceFlag{
			Name:    flagTrustRoot,
			EnvVars: []string{"TEMPEL_TRUST_ROOT"},
			Usage:   "trusted root certificate (`PEM/DER` file) for the publications file's signature (repeatable)",
		},
		&ucli.StringSliceFlag{
			Name:    flagCnstr,
			EnvVars: []string{"TEMPEL_CNSTR"},
			Usage:   "required attribute of the publications file signer, `OID=VALUE` such as E=publications@example.org (repeatable; E, CN, C, O or a dotted OID)",
		},
		&ucli.BoolFlag{
			Name:  flagPubfileNoVerify,
			Usage: "use the publications file WITHOUT checking its signature (tests only: anyone can make such a file)",
		},
	}
}

// trustOptions are the values of [trustFlags].
type trustOptions struct {
	pubfile  string
	roots    []string
	cnstr    []string
	noVerify bool
	tlsCAs   []string // --tls-ca, for https:// URLs
}

func trustOptionsFrom(c *ucli.Context) trustOptions {
	return trustOptions{
		pubfile:  strings.TrimSpace(c.String(flagPubfile)),
		roots:    nonEmptyValues(c.StringSlice(flagTrustRoot)),
		cnstr:    nonEmptyValues(c.StringSlice(flagCnstr)),
		noVerify: c.Bool(flagPubfileNoVerify),
		tlsCAs:   c.StringSlice(flagTLSCA),
	}
}

// nonEmptyValues drops empty values, which an environment variable set to ""
// gives.
func nonEmptyValues(vs []string) []string {
	var out []string
	for _, v := range vs {
		if strings.TrimSpace(v) != "" {
			out = append(out, v)
		}
	}
	return out
}

// check validates the combination of trust flags before any input is
// read. A publications file is a trust anchor: using one nobody checked
// must be an explicit choice (--pubfile-no-verify), never a default.
func (t trustOptions) check() ([]verifier.Constraint, error) {
	trust := len(t.roots) > 0 || len(t.cnstr) > 0
	switch {
	case t.pubfile == "" && (trust || t.noVerify):
		return nil, usageErrorf("--%s, --%s and --%s apply to a publications file: add --%s PATH|URL",
			flagTrustRoot, flagCnstr, flagPubfileNoVerify, flagPubfile)
	case t.pubfile == "":
		return nil, nil
	case t.noVerify && trust:
		return nil, usageErrorf("--%s skips the check that --%s and --%s configure: give one or the other",
			flagPubfileNoVerify, flagTrustRoot, flagCnstr)
	case t.noVerify:
		return nil, nil
	}
	var missing []string
	if len(t.roots) == 0 {
		missing = append(missing, "--"+flagTrustRoot+" CERT (the root certificate of its signer)")
	}
	if len(t.cnstr) == 0 {
		missing = append(missing, "--"+flagCnstr+" E=ADDRESS (the signer's e-mail address)")
	}
	if len(missing) > 0 {
		return nil, usageErrorf("the publications file %s must be verified before use: add %s (or set them in the config file %s), or --%s for tests",
			t.pubfile, strings.Join(missing, " and "), defaultConfigHint(), flagPubfileNoVerify)
	}
	cs := make([]verifier.Constraint, 0, len(t.cnstr))
	for _, s := range t.cnstr {
		c, err := verifier.ParseConstraint(s)
		if err != nil {
			return nil, usageErrorf("--%s: %v", flagCnstr, trimPkg(err))
		}
		cs = append(cs, c)
	}
	return cs, nil
}

// loadPublicationsFile reads the publications file named by t and, unless
// t.noVerify, verifies its PKCS#7 signature against the trust roots and
// constraints at now. It returns nil when no file was named.
func loadPublicationsFile(ctx context.Context, client *http.Client, t trustOptions, now time.Time) (*ksi.PublicationsFile, error) {
	cs, err := t.check()
	if err != nil || t.pubfile == "" {
		return nil, err
	}
	if client == nil && len(t.tlsCAs) > 0 {
		if client, err = httpClient(t.tlsCAs, fetchTimeout); err != nil {
			return nil, err
		}
	}
	b, err := readSource(ctx, client, t.pubfile, ksi.MaxPublicationsFileSize)
	if err != nil {
		return nil, inputErrorf("cannot read publications file: %v", err)
	}
	pf, err := ksi.ParsePublicationsFile(b)
	if err != nil {
		return nil, inputErrorf("%s is not a valid publications file: %v", t.pubfile, trimPkg(err))
	}
	if t.noVerify {
		return pf, nil
	}
	roots := x509.NewCertPool()
	for _, p := range t.roots {
		certs, err := verifier.LoadCertificates(p)
		if err != nil {
			return nil, inputErrorf("cannot read trust root %s: %v", p, trimPkg(err))
		}
		for _, c := range certs {
			roots.AddCert(c)
		}
	}
	if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: roots, Constraints: cs, Time: now}); err != nil {
		return nil, inputErrorf("%s: %v", t.pubfile, trimPkg(err))
	}
	return pf, nil
}

// trimPkg drops the "verifier: " or "ksi: " prefix of a library error:
// the command name already starts the line, and a citizen does not care
// which package spoke.
func trimPkg(err error) string {
	s := err.Error()
	for _, p := range []string{"verifier: ", "ksi: "} {
		s = strings.TrimPrefix(s, p)
	}
	return s
}

// noVerifyWarning is printed with every result that used a publications
// file nobody checked.
const noVerifyWarning = "the publications file was NOT verified (--" + flagPubfileNoVerify + "): " +
	"anyone could have made it, so this result proves nothing outside tests"
