package cli

import (
	"crypto/x509"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/verifier"
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
				Description: "With --members N it lays out the PKI of a replicated calendar of N members instead:\n" +
					"DATA-DIR/node1 ... DATA-DIR/nodeN are the members' data directories (tempel serve\n" +
					"--node-id I --data-dir DATA-DIR/nodeI). They share one root and one publisher, so\n" +
					"verifiers pin the same root.pem and --cnstr whichever member answers; each member\n" +
					"signs calendar roots with its own calendar key, and its keys/members.pem lists\n" +
					"every member's calendar certificate for the publications file. The root key stays\n" +
					"in DATA-DIR/ca, which no member needs.",
				Flags: []ucli.Flag{dataDir,
					&ucli.IntFlag{Name: "members", Usage: fmt.Sprintf("lay out the keys of a replicated calendar of `N` members (1 to %d) in DATA-DIR/node1 ... DATA-DIR/nodeN; 0: one calendar in DATA-DIR/keys", pki.MaxMembers)},
					&ucli.StringFlag{Name: "email", Value: pki.DefaultEmail, Usage: "e-mail address in the publisher certificate (what verifiers pin with --cnstr E=...)"},
					&ucli.StringFlag{Name: "org", Value: pki.DefaultOrganization, Usage: "organization name in the certificates"},
					&ucli.StringFlag{Name: "tls-hosts", Value: strings.Join(pki.DevTLSHosts, ","), Usage: "comma-separated host names and IP addresses of the TLS server certificate(s) (tempel serve --tls)"},
					&ucli.StringFlag{Name: "tsa-key", Value: string(pki.TSAKeyRSA), Usage: "key type of the RFC 3161 time-stamping certificate (tsa.pem): rsa (RSA-2048) or ecdsa (P-256)"},
					&ucli.BoolFlag{Name: "force", Usage: "replace existing keys (signatures made with the old keys stay verifiable only with the old root)"},
					&ucli.BoolFlag{Name: "json", Usage: "print JSON"},
				},
				Action: keysInit,
			},
			keysHSMInitCommand(dataDir),
			{
				Name:  "show",
				Usage: "print the trust root's path and fingerprint, the constraint to pin, and the other members' calendar certificates",
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
			keysRotateCommand(dataDir),
			keysRetireCommand(dataDir),
		},
	}
}

func keysInit(c *ucli.Context) error {
	if c.NArg() > 0 {
		return usageErrorf("keys init takes no arguments, got %q", c.Args().First())
	}
	var hosts []string
	for _, h := range strings.Split(c.String("tls-hosts"), ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	if len(hosts) == 0 {
		return usageErrorf("--tls-hosts %q: give at least one host name or address", c.String("tls-hosts"))
	}
	opts := pki.InitOptions{Email: c.String("email"), Organization: c.String("org"), Force: c.Bool("force"), TLSHosts: hosts,
		TSAKey: pki.TSAKeyType(c.String("tsa-key"))}
	if k := opts.TSAKey; k != pki.TSAKeyRSA && k != pki.TSAKeyECDSA {
		return usageErrorf("--tsa-key %q: want %s or %s", k, pki.TSAKeyRSA, pki.TSAKeyECDSA)
	}
	if n := c.Int("members"); n != 0 {
		if n < 1 || n > pki.MaxMembers {
			return usageErrorf("--members %d: a replicated calendar has 1 to %d members", n, pki.MaxMembers)
		}
		sets, err := pki.InitMembers(c.String("data-dir"), n, opts)
		if err != nil {
			return inputErrorf("%v", err)
		}
		return showMembers(c, c.String("data-dir"), sets)
	}
	dir := filepath.Join(c.String("data-dir"), "keys")
	set, err := pki.Init(dir, opts)
	if err != nil {
		return inputErrorf("%v", err)
	}
	return showKeys(c, dir, set)
}

type certInfo struct {
	ID      string `json:"id"`
	Subject string `json:"subject"`
	ValidTo string `json:"valid_to"`
}

func showKeys(c *ucli.Context, dir string, set *pki.Set) error {
	info := map[string]any{
		"keys_dir":          dir,
		"trust_root":        set.RootPath,
		"root_fingerprint":  "SHA-256 " + set.RootFingerprint(),
		"constraint":        set.Constraint(),
		"publisher_subject": set.Publisher.Subject.String(),
		"calendar_cert_id":  fmt.Sprintf("%X", set.CalendarCertID()),
		"calendar_valid_to": set.Calendar.NotAfter.UTC().Format("2006-01-02T15:04:05Z"),
	}
	var members []certInfo
	for _, r := range set.CertificateRecords()[1 : 1+len(set.Members)] {
		m, err := x509.ParseCertificate(r.DER)
		if err != nil {
			return fmt.Errorf("keys: member certificate %X: %w", r.ID, err)
		}
		members = append(members, certInfo{fmt.Sprintf("%X", r.ID), verifier.SubjectString(m.Subject), m.NotAfter.UTC().Format("2006-01-02T15:04:05Z")})
	}
	if len(members) > 0 {
		info["member_certs"] = members
	}
	retired := retiredInfo(set)
	if len(retired) > 0 {
		info["retired_certs"] = retired
	}
	tsa := "none: " + set.TSAMissing
	if set.TSA != nil {
		tsa = fmt.Sprintf("%s (%s key, valid to %s)", verifier.SubjectString(set.TSA.Subject), set.TSA.PublicKeyAlgorithm, set.TSA.NotAfter.UTC().Format("2006-01-02T15:04:05Z"))
		info["tsa_subject"] = verifier.SubjectString(set.TSA.Subject)
		info["tsa_key"] = set.TSA.PublicKeyAlgorithm.String()
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
	for _, m := range members {
		fmt.Fprintf(w, "member cert id:     %s (%s, valid to %s)\n", m.ID, m.Subject, m.ValidTo)
	}
	for _, r := range retired {
		fmt.Fprintf(w, "retired cert id:    %s (%s, valid to %s)\n", r.ID, r.Subject, r.ValidTo)
	}
	fmt.Fprintf(w, "RFC 3161 TSA:       %s\n", tsa)
	return nil
}

type memberInfo struct {
	ID             int    `json:"id"`
	DataDir        string `json:"data_dir"`
	KeysDir        string `json:"keys_dir"`
	CalendarCertID string `json:"calendar_cert_id"`
	CalendarSubj   string `json:"calendar_subject"`
	CalendarValid  string `json:"calendar_valid_to"`
}

// showMembers prints what pki.InitMembers laid out below dir.
func showMembers(c *ucli.Context, dir string, sets []*pki.Set) error {
	s := sets[0]
	info := struct {
		Dir             string       `json:"dir"`
		TrustRoot       string       `json:"trust_root"`
		RootKey         string       `json:"root_key"`
		RootFingerprint string       `json:"root_fingerprint"`
		Constraint      string       `json:"constraint"`
		Publisher       string       `json:"publisher_subject"`
		Members         []memberInfo `json:"members"`
	}{
		Dir:             dir,
		TrustRoot:       filepath.Join(dir, pki.CADir, pki.RootCertFile),
		RootKey:         filepath.Join(dir, pki.CADir, pki.RootKeyFile),
		RootFingerprint: "SHA-256 " + s.RootFingerprint(),
		Constraint:      s.Constraint(),
		Publisher:       s.Publisher.Subject.String(),
	}
	for i, m := range sets {
		d := pki.MemberDataDir(dir, i+1)
		info.Members = append(info.Members, memberInfo{ID: i + 1, DataDir: d, KeysDir: filepath.Join(d, "keys"),
			CalendarCertID: fmt.Sprintf("%X", m.CalendarCertID()), CalendarSubj: verifier.SubjectString(m.Calendar.Subject),
			CalendarValid: m.Calendar.NotAfter.UTC().Format("2006-01-02T15:04:05Z")})
	}
	w := c.App.Writer
	if c.Bool("json") {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(info)
	}
	fmt.Fprintf(w, "cluster keys:       %s (%d members)\n", dir, len(sets))
	fmt.Fprintf(w, "trust root:         %s\n", info.TrustRoot)
	fmt.Fprintf(w, "root fingerprint:   %s\n", info.RootFingerprint)
	fmt.Fprintf(w, "pin with:           --trust-root %s --cnstr %s\n", info.TrustRoot, info.Constraint)
	fmt.Fprintf(w, "root key:           %s (no member needs it: keep it offline)\n", info.RootKey)
	for _, m := range info.Members {
		fmt.Fprintf(w, "member %d:           tempel serve --node-id %d --data-dir %s (calendar cert id %s)\n", m.ID, m.ID, m.DataDir, m.CalendarCertID)
	}
	return nil
}
