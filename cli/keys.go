package cli

import (
	"encoding/json"
	"fmt"
	"path/filepath"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/pki"
)

func keysCommand() *ucli.Command {
	dataDir := &ucli.StringFlag{Name: "data-dir", Value: defaultDataDir, Usage: "the server's data `DIR` (keys live in DIR/keys)", EnvVars: []string{"TEMPEL_DATA_DIR"}}
	return &ucli.Command{
		Name:  "keys",
		Usage: "create or show the calendar's keys and certificates",
		Description: "The calendar signs its roots with the calendar key and the publications file\n" +
			"with the publisher key; verifiers pin the root certificate (root.pem) and the\n" +
			"publisher's e-mail address (--cnstr E=...). Key files are created with mode 0600.",
		Subcommands: []*ucli.Command{
			{
				Name:  "init",
				Usage: "create a development PKI (root CA, publisher, calendar signer, TLS server certificate for localhost) under DATA-DIR/keys",
				Flags: []ucli.Flag{dataDir,
					&ucli.StringFlag{Name: "email", Value: pki.DefaultEmail, Usage: "e-mail address in the publisher certificate (what verifiers pin with --cnstr E=...)"},
					&ucli.StringFlag{Name: "org", Value: pki.DefaultOrganization, Usage: "organization name in the certificates"},
					&ucli.BoolFlag{Name: "force", Usage: "replace existing keys (signatures made with the old keys stay verifiable only with the old root)"},
					&ucli.BoolFlag{Name: "json", Usage: "print JSON"},
				},
				Action: func(c *ucli.Context) error {
					dir := filepath.Join(c.String("data-dir"), "keys")
					set, err := pki.Init(dir, pki.InitOptions{Email: c.String("email"), Organization: c.String("org"), Force: c.Bool("force"),
						TLSHosts: pki.DevTLSHosts})
					if err != nil {
						return inputErrorf("%v", err)
					}
					return showKeys(c, dir, set)
				},
			},
			{
				Name:  "show",
				Usage: "print the trust root's path and fingerprint and the constraint to pin",
				Flags: []ucli.Flag{dataDir, &ucli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *ucli.Context) error {
					dir := filepath.Join(c.String("data-dir"), "keys")
					set, err := pki.Load(dir)
					if err != nil {
						return inputErrorf("%v (run 'tempel keys init' or start 'tempel serve' once)", err)
					}
					return showKeys(c, dir, set)
				},
			},
		},
	}
}

func showKeys(c *ucli.Context, dir string, set *pki.Set) error {
	info := map[string]string{
		"keys_dir":          dir,
		"trust_root":        set.RootPath,
		"root_fingerprint":  "SHA-256 " + set.RootFingerprint(),
		"constraint":        set.Constraint(),
		"publisher_subject": set.Publisher.Subject.String(),
		"calendar_cert_id":  fmt.Sprintf("%X", set.CalendarCertID()),
		"calendar_valid_to": set.Calendar.NotAfter.UTC().Format("2006-01-02T15:04:05Z"),
	}
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Fprintf(w, "keys:               %s\n", dir)
	fmt.Fprintf(w, "trust root:         %s\n", set.RootPath)
	fmt.Fprintf(w, "root fingerprint:   %s\n", info["root_fingerprint"])
	fmt.Fprintf(w, "pin with:           --trust-root %s --cnstr %s\n", set.RootPath, set.Constraint())
	fmt.Fprintf(w, "calendar cert id:   %s (valid to %s)\n", info["calendar_cert_id"], info["calendar_valid_to"])
	return nil
}
