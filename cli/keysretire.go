package cli

import (
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/pki"
)

func keysRetireCommand(dataDir ucli.Flag) *ucli.Command {
	return &ucli.Command{
		Name:  "retire",
		Usage: "retire a calendar certificate whose key is not a file of DATA-DIR/keys (a key in a PKCS#11 token): the root re-issues it to end at the newest second signed, for serve --retired-certs",
		Description: "The step of a key rotation that `tempel keys rotate` does for the key files of\n" +
			"DATA-DIR/keys, for a key elsewhere. Make the new key and its certificate first\n" +
			"(tempel keys hsm-init --label-prefix tempel-2027- --out NEWDIR), stop the server,\n" +
			"then run retire with --cert the certificate the server signed with: the root\n" +
			"re-issues it to end at the retirement (the newest second the calendar signed, or\n" +
			"now without a calendar) and appends it to --retired-certs FILE under\n" +
			"the old certificate id. Start the server with the new key and certificate and\n" +
			"--retired-certs FILE: signatures made under the old key keep verifying key-based, and\n" +
			"a root dated after the retirement signed with the old key does not. Like rotate, it\n" +
			"refuses while a server holds DATA-DIR/calendar, and a server given the old key with\n" +
			"its own certificate in --retired-certs refuses to start. Running it again for the same\n" +
			"certificate changes nothing. The token is not needed: the certificate holds the\n" +
			"public key.",
		Flags: []ucli.Flag{dataDir,
			&ucli.StringFlag{Name: "cert", Required: true, Usage: "the calendar certificate `FILE` the server signed with (its --calendar-cert)"},
			&ucli.StringFlag{Name: "retired-certs", Required: true, Usage: "`FILE` of retired certificates to append to, created if absent (serve --retired-certs)"},
			&ucli.StringFlag{Name: "root-cert", Usage: "the root certificate `FILE` that issued --cert (default DIR/keys/root.pem)"},
			&ucli.StringFlag{Name: "root-key", Usage: "the root key `FILE` that re-issues it (default DIR/keys/root.key)"},
			&ucli.StringFlag{Name: "at", Usage: "retirement `TIME` (RFC 3339) instead of now; not in the future, nor before the newest second the calendar signed"},
			&ucli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: keysRetire,
	}
}

func keysRetire(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("keys retire takes no arguments, got %q", c.Args().First())
	}
	dataDir := c.String("data-dir")
	keysDir := filepath.Join(dataDir, "keys")
	opts := pki.RetireOptions{Cert: c.String("cert"), RetiredFile: c.String("retired-certs"),
		RootCert: c.String("root-cert"), RootKey: c.String("root-key")}
	if opts.RootCert == "" {
		opts.RootCert = filepath.Join(keysDir, pki.RootCertFile)
	}
	if opts.RootKey == "" {
		opts.RootKey = filepath.Join(keysDir, pki.RootKeyFile)
	}
	var at time.Time
	if s := c.String("at"); s != "" {
		t, err := time.Parse(time.RFC3339, s)
		if err != nil {
			return usageErrorf("--at %q: want an RFC 3339 time such as 2027-01-01T00:00:00Z", s)
		}
		if t.After(time.Now()) {
			return usageErrorf("--at %s is in the future: until then a thief of the old key could sign roots that verify; retire it now (no --at)", s)
		}
		at = t
	}
	store, last, err := openStore(dataDir)
	if err != nil {
		return err
	}
	defer store.Close()
	if at.IsZero() {
		at = retirementTime(time.Now(), last)
	} else if lastT := time.Unix(int64(min(last, 1<<62)), 0); last > 0 && at.Before(lastT) {
		return usageErrorf("--at %s is before %s, the newest second the calendar in %s signed: the roots signed after it would stop verifying",
			at.UTC().Format(time.RFC3339), lastT.UTC().Format(time.RFC3339), dataDir)
	}
	opts.At = at
	rc, err := pki.Retire(opts)
	already := errors.Is(err, pki.ErrAlreadyRetired)
	if err != nil && !already {
		return inputErrorf("%v", err)
	}
	info := retiredCertInfo(rc)
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(struct {
			certInfo
			File    string `json:"retired_certs"`
			Already bool   `json:"already_retired"`
		}{info, opts.RetiredFile, already})
	}
	w := c.App.Writer
	if already {
		fmt.Fprintf(w, "already retired:    %s (%s, valid to %s) in %s; nothing changed\n", info.ID, info.Subject, info.ValidTo, opts.RetiredFile)
	} else {
		fmt.Fprintf(w, "retired cert id:    %s (%s, valid to %s)\n", info.ID, info.Subject, info.ValidTo)
		fmt.Fprintf(w, "written to:         %s\n", opts.RetiredFile)
	}
	fmt.Fprintf(w, "next:               start the server with the new calendar key and certificate and --retired-certs %s\n", opts.RetiredFile)
	return nil
}
