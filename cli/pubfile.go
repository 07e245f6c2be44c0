package cli

import (
	"context"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/smallstep/pkcs7"
	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// Flags of the pubfile command.
const (
	flagWait          = "wait"
	flagWaitNewerThan = "wait-newer-than"
)

// pollInterval is how often --wait fetches the file again. Publications
// come at most once a second, so polling faster gains nothing.
const pollInterval = 500 * time.Millisecond

// publicationsPath is where a Tempel server serves its publications file.
const publicationsPath = "/publications.bin"

// defaultPubfileURL is the publications file of the first --server.
func defaultPubfileURL(endpoints []string) string {
	host := defaultServer
	if len(endpoints) > 0 {
		host = endpoints[0]
	}
	return baseURL(host) + publicationsPath
}

const pubfileDescription = `Downloads (or reads) a publications file, verifies its signature against
the trust root (--trust-root) and the constraints on its signer (--cnstr),
and shows its header, its certificates and its publications. The last line
is the newest publication string alone, so that

   tempel pubfile --trust-root root.pem --cnstr E=publications@tempel.test | tail -1

gives the string to write down, print, or pass to tempel verify --pub-str.
With --json the file is printed as one JSON object whose field
latest_publication_string holds the same string.

The file is PATH or URL, by default http://SERVER/publications.bin of the
first --server (default ` + defaultServer + `). -o PATH saves a copy, only
after it has been verified; tempel verify --pubfile PATH then works offline.

--wait DURATION fetches the file again every 0.5 s until it has a
publication at or after --wait-newer-than TIME (POSIX seconds or RFC 3339;
default: a publication newer than the newest one at the start), for at
most DURATION. Scripts use it to wait for the publication that covers a
signature instead of sleeping:

   tempel pubfile --wait 1m --wait-newer-than 2026-01-02T15:04:05Z

(the signing time tempel sign printed). Without --wait,
--wait-newer-than only checks.

Exit code 2 when the wanted publication did not appear in time, or the
file has no publications at all.

` + exitCodesHelp

func pubfileCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Usage: "save the verified file to `PATH` (replacing it)"},
		&ucli.DurationFlag{Name: flagWait, Usage: "poll for at most `DURATION` until the file has the publication --wait-newer-than asks for"},
		&ucli.StringFlag{Name: flagWaitNewerThan, Usage: "want a publication at or after `TIME` (POSIX seconds or RFC 3339)"},
		&ucli.BoolFlag{Name: flagJSON, Usage: "print one JSON object"},
	}
	for _, f := range trustFlags() {
		// The file itself is the positional argument here.
		if f.Names()[0] != flagPubfile {
			flags = append(flags, f)
		}
	}
	// Only the address is used (for the default URL): the file is
	// fetched over HTTP, which needs no credentials.
	flags = append(flags, &ucli.StringSliceFlag{
		Name:    flagServer,
		EnvVars: []string{"TEMPEL_SERVER"},
		Usage:   "Tempel server `ADDR` (HOST:PORT, http:// or https://HOST:PORT) whose /publications.bin is read when no PATH|URL is given",
	}, tlsCAFlag())
	return &ucli.Command{
		Name:        "pubfile",
		Usage:       "download, verify and show a publications file",
		ArgsUsage:   "[PATH|URL]",
		Description: pubfileDescription,
		Flags:       flags,
		Action:      runPubfile,
	}
}

// pubfileJSON is the --json output of pubfile.
type pubfileJSON struct {
	*pubfileView
	Source                  string   `json:"source"`
	Verified                bool     `json:"verified"`
	Signer                  string   `json:"signer,omitempty"`
	SignerSHA256            string   `json:"signer_sha256,omitempty"`
	Warnings                []string `json:"warnings,omitempty"`
	SavedTo                 string   `json:"saved_to,omitempty"`
	LatestPublicationTime   string   `json:"latest_publication_time,omitempty"`
	LatestPublicationUnix   uint64   `json:"latest_publication_time_unix,omitempty"`
	LatestPublicationString string   `json:"latest_publication_string,omitempty"`
}

func runPubfile(c *ucli.Context) error {
	if c.NArg() > 1 {
		return usageErrorf("one publications file at a time, got %d arguments", c.NArg())
	}
	t, defaulted, err := pubfileTrust(c)
	if err != nil {
		return err
	}
	wait := c.Duration(flagWait)
	if wait < 0 {
		return usageErrorf("--%s %s: must not be negative", flagWait, wait)
	}
	var want uint64
	haveWant := c.IsSet(flagWaitNewerThan)
	if haveWant {
		if want, err = parseTimeArg(c.String(flagWaitNewerThan)); err != nil {
			return usageErrorf("--%s: %v", flagWaitNewerThan, err)
		}
	}
	pf, err := pollPublicationsFile(c.Context, t, wait, want, haveWant)
	var notYet *notYetError
	switch {
	case errors.As(err, &notYet):
		return &exitError{code: ExitInconclusive, err: err}
	case err != nil && defaulted && retryable(err):
		return inputErrorf("%v (is 'tempel serve' running there? --%s or a PATH|URL names another)", err, flagServer)
	case err != nil:
		return err
	}
	return showPubfile(c, t, pf)
}

// pubfileTrust is where the file comes from (defaulted: the server's)
// and how it is checked.
func pubfileTrust(c *ucli.Context) (t trustOptions, defaulted bool, err error) {
	t = trustOptionsFrom(c)
	t.pubfile = c.Args().First()
	defaulted = t.pubfile == ""
	if defaulted {
		t.pubfile = defaultPubfileURL(serverList(c))
	}
	if !t.noVerify && (len(t.roots) == 0 || len(t.cnstr) == 0) {
		// check() would say the same, but in terms of --pubfile, which
		// this command does not have.
		return t, defaulted, usageErrorf("a publications file must be verified: add --%s CERT and --%s E=ADDRESS (tempel serve prints both; 'tempel keys show'), or --%s for tests",
			flagTrustRoot, flagCnstr, flagPubfileNoVerify)
	}
	return t, defaulted, nil
}

// showPubfile saves the file when asked and prints it.
func showPubfile(c *ucli.Context, t trustOptions, pf *ksi.PublicationsFile) error {
	if out := c.String(flagOutput); out != "" {
		if err := writeAtomic(out, pf.Raw); err != nil {
			return inputErrorf("cannot save the publications file: %v", err)
		}
	}
	view := pubfileJSON{pubfileView: newPubfileView(pf), Source: t.pubfile, Verified: !t.noVerify, SavedTo: c.String(flagOutput)}
	if t.noVerify {
		view.Warnings = append(view.Warnings, noVerifyWarning)
	} else {
		view.Signer, view.SignerSHA256 = signerSubject(pf), signerFingerprint(pf)
	}
	latest := pf.Latest()
	if latest != nil {
		view.LatestPublicationTime = formatTime(latest.Data.Time)
		view.LatestPublicationUnix = latest.Data.Time
		view.LatestPublicationString = latest.Data.String()
	}
	if c.Bool(flagJSON) {
		enc := json.NewEncoder(c.App.Writer)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		if err := enc.Encode(view); err != nil {
			return err
		}
	} else {
		writePubfileText(c.App.Writer, &view)
	}
	if t.noVerify {
		fmt.Fprintf(c.App.ErrWriter, "%s: WARNING: %s\n", commandName(c), noVerifyWarning)
	}
	if latest == nil {
		// A script reading the last line would otherwise take a heading
		// for a publication string.
		return &exitError{code: ExitInconclusive, err: errors.New("the publications file has no publications yet")}
	}
	return nil
}

// notYetError says that the wanted publication has not appeared.
type notYetError struct{ msg string }

func (e *notYetError) Error() string { return e.msg }

// pollPublicationsFile loads and verifies the file and, when a
// publication at or after want is asked for (haveWant, or implicitly
// "newer than the newest one now" with wait alone), fetches it again
// every [pollInterval] until it has one or wait has passed.
//
// Read errors while waiting are retried (a server that restarts should
// not end a wait); a file that does not verify ends it at once.
func pollPublicationsFile(ctx context.Context, t trustOptions, wait time.Duration, want uint64, haveWant bool) (*ksi.PublicationsFile, error) {
	deadline := time.Now().Add(wait)
	// One client for all polls, so the connection is reused; a fetch
	// takes no longer than the wait.
	timeout := fetchTimeout
	if wait > 0 {
		timeout = min(wait, fetchTimeout)
	}
	hc, err := httpClient(t.tlsCAs, timeout)
	if err != nil {
		return nil, err
	}
	w := &wantedPublication{time: want, set: haveWant, next: wait > 0 && !haveWant}
	for {
		pf, err := loadPublicationsFile(ctx, hc, t, time.Now())
		if w.met(pf, err) {
			return pf, nil
		}
		if err != nil && !retryable(err) {
			return nil, err
		}
		if wait == 0 || !time.Now().Add(pollInterval).Before(deadline) {
			if err != nil {
				return nil, err
			}
			return nil, notYet(pf, w.time, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(pollInterval):
		}
	}
}

// wantedPublication is the publication pubfile waits for: one at or
// after time when set. With --wait alone (next) the first poll names it:
// the one after the newest that poll found.
type wantedPublication struct {
	time      uint64
	set, next bool
}

// met reports whether a poll's file (err: the poll failed) has the
// wanted publication.
func (w *wantedPublication) met(pf *ksi.PublicationsFile, err error) bool {
	first := w.next
	w.next = false
	if err != nil {
		return false
	}
	if first {
		w.set = true
		if l := pf.Latest(); l != nil {
			w.time = l.Data.Time + 1
		}
	}
	return !w.set || hasPublicationFrom(pf, w.time)
}

// notYet says that pf has no publication at or after want, after
// waiting wait.
func notYet(pf *ksi.PublicationsFile, want uint64, wait time.Duration) error {
	msg := fmt.Sprintf("no publication at or after %s in the file yet", formatTime(want))
	if l := pf.Latest(); l != nil {
		msg += fmt.Sprintf(" (newest: %s)", formatTime(l.Data.Time))
	}
	if wait > 0 {
		msg += fmt.Sprintf(" after waiting %s", wait)
	} else {
		msg += fmt.Sprintf("; add --%s DURATION to wait for it", flagWait)
	}
	return &notYetError{msg}
}

// retryable reports whether loading the publications file failed in a
// way that may pass (reading it), not one that will not (a file that
// fails to parse or verify, a bad flag). loadPublicationsFile reports
// only a message, so the message is what tells them apart.
func retryable(err error) bool {
	return strings.Contains(err.Error(), "cannot read publications file")
}

func hasPublicationFrom(pf *ksi.PublicationsFile, t uint64) bool {
	l := pf.Latest()
	return l != nil && l.Data.Time >= t
}

// signerSubject names the signer of a verified file, so that the user
// sees what the --cnstr matched. "" when it cannot be read, which
// verification would already have refused.
func signerSubject(pf *ksi.PublicationsFile) string {
	p7, err := pkcs7.Parse(pf.Signature)
	if err != nil {
		return ""
	}
	var s *x509.Certificate
	if s = p7.GetOnlySigner(); s == nil {
		return ""
	}
	return verifier.SubjectString(s.Subject)
}

func writePubfileText(w io.Writer, v *pubfileJSON) {
	t := textWriter{w}
	t.head("KSI publications file %s (%d bytes)", v.Source, v.Size)
	if v.Verified {
		t.field(2, "signature", "verified")
		if v.Signer != "" {
			t.field(2, "signed by", v.Signer)
		}
	} else {
		t.field(2, "signature", "NOT VERIFIED (--"+flagPubfileNoVerify+")")
	}
	t.field(2, "created", v.CreationTime)
	if v.RepositoryURI != "" {
		t.field(2, "repository URI", v.RepositoryURI)
	}
	if v.SavedTo != "" {
		t.field(2, "saved to", v.SavedTo)
	}
	writeCertsAndPublications(t, v.Certificates, v.Publications)
	if v.LatestPublicationString != "" {
		t.head("Latest publication (%s):", v.LatestPublicationTime)
		// Alone on the last line, for `| tail -1`.
		t.head("%s", v.LatestPublicationString)
	}
}

// parseTimeArg reads a time given as POSIX seconds or RFC 3339 (also a
// bare date, meaning its midnight UTC).
func parseTimeArg(s string) (uint64, error) {
	s = strings.TrimSpace(s)
	if n, err := strconv.ParseUint(s, 10, 64); err == nil {
		return n, nil
	}
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			if t.Unix() < 0 {
				return 0, fmt.Errorf("%q is before 1970", s)
			}
			return uint64(t.Unix()), nil
		}
	}
	return 0, fmt.Errorf("%q is not a time: want POSIX seconds (1700000000) or RFC 3339 (2026-01-02T15:04:05Z)", s)
}
