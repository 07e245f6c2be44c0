package cli

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// Flags of the extend command.
const (
	flagTime    = "time"
	flagReplace = "replace"
)

// extSuffix replaces nothing: SIG.ksig is extended into SIG.ksig.ext.ksig
// unless --replace or -o says otherwise, so the original is kept.
const extSuffix = ".ext.ksig"

const extendDescription = `Extends each SIGNATURE to a publication: the signature's calendar chain is
replaced by one that reaches the published calendar root, and the
publication record is added. An extended signature can be verified years
later without the server or any key: against the publications file
(--policy publication) or against the publication string alone
(tempel verify --pub-str STRING).

The publication is, by default, the newest one in the publications file;
--pub-str STRING chooses one by its string, --time TIME (POSIX seconds or
RFC 3339) the one published at TIME. A publication covers the signatures
made up to its time, so a fresh signature must wait for the next
publication (exit code 2 until then; tempel pubfile --wait waits for it).

The calendar chain comes from the extender at --server (default
` + defaultServer + `, or TEMPEL_SERVER), the publication record from the
publications file (--pubfile, default http://SERVER/publications.bin),
which must be verified: --trust-root and --cnstr, as for tempel verify.
With --pub-str and none of these flags the record is built from the
string itself.

The result goes to SIGNATURE.ext.ksig (doc.txt.ksig -> doc.txt.ksig.ext.ksig),
to -o PATH (one SIGNATURE), or replaces SIGNATURE with --replace (atomically,
no backup); existing files are not overwritten without --force (an existing SIGNATURE.ext.ksig of the same signature
that reaches a publication counts as already extended, so that running
extend -r over a tree again extends only the new signatures). As
ksi-tool writes its result to a separate file (ksi extend -i SIG -o OUT),
extend never changes its input unless asked: the original signature stays
as the server made it, and a failed or wrong extension cannot cost it. 'tempel verify doc.txt' then uses doc.txt.ksig.ext.ksig when
it exists, so nothing else has to change.

RFC 3161 TOKENS (.tsr, .tst, told by their content): the KSI signature
inside the token is extended and the token written back with only that
unsigned attribute replaced, so the TSA's signature stays valid; the
result goes to NAME.tsr.ext.tsr (NAME.tst.ext.tst) unless -o or --replace
says otherwise. An ASiC-S container (.asics) is written again with the
extended token, to NAME.asics.ext.asics.

MANY SIGNATURES: -r DIR takes every signature under DIR (*.ksig, not the
*.ext.ksig results), --from-list LIST one path per line (- for standard
input). They are extended in parallel (--workers, default the number of
CPUs), with a progress bar on a terminal and one summary line at the end
(a line per signature with -v; each failure is named on standard error,
and the last line names them all). The exit code is the worst outcome:
3 for an error, 2 when a signature cannot be extended yet.

For one signature the publication string is printed. --json prints one
JSON object per signature (JSON Lines) with the fields signature, output,
status (extended, already-extended, not-yet, error), publication_string,
publication_time, signing_time, message; the summary of several then goes
to standard error.

` + exitCodesHelp

func extendCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: flagPubStr, Usage: "extend to the publication `STRING` (AAAAAA-…)"},
		&ucli.StringFlag{Name: flagTime, Usage: "extend to the publication of `TIME` (POSIX seconds or RFC 3339) in the publications file"},
		&ucli.BoolFlag{Name: flagReplace, Usage: "replace each SIGNATURE with its extended form (atomically)"},
		&ucli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Usage: "write the extended signature to `PATH` (one SIGNATURE only)"},
		&ucli.BoolFlag{Name: flagForce, Aliases: []string{"f"}, Usage: "overwrite existing output files"},
		&ucli.BoolFlag{Name: flagJSON, Usage: "print one JSON object per signature (JSON Lines)"},
		&ucli.BoolFlag{Name: flagVerbose, Aliases: []string{"v"}, Usage: "with several signatures, print a line per signature"},
	}
	flags = append(flags, inputFlags("signatures")...)
	flags = append(flags, serverFlags(true)...)
	return &ucli.Command{
		Name:        "extend",
		Usage:       "extend signatures to a publication, for verification without keys or servers",
		ArgsUsage:   "SIGNATURE...",
		UsageText:   "tempel extend [flags] SIGNATURE...\ntempel extend [flags] -r DIR...\ntempel extend [flags] --from-list LIST",
		Description: extendDescription,
		Flags:       append(flags, trustFlags()...),
		Action:      runExtend,
	}
}

// Statuses of one extension, in the --json output.
const (
	extStatusExtended = "extended"
	extStatusAlready  = "already-extended"
	extStatusNotYet   = "not-yet"
	extStatusError    = "error"
)

type extendView struct {
	Signature         string `json:"signature"`
	Output            string `json:"output,omitempty"`
	Status            string `json:"status"`
	PublicationString string `json:"publication_string,omitempty"`
	PublicationTime   string `json:"publication_time,omitempty"`
	SigningTime       string `json:"signing_time,omitempty"`
	Message           string `json:"message,omitempty"`

	code int // the exit code of this signature alone
}

// extendTarget is the publication to extend to, and how it was chosen.
type extendTarget struct {
	rec *ksi.PublicationRecord
	// newest: the default, the newest publication of the file; a
	// signature made after it may be extended later.
	newest bool
	// period is the server's publication period as seen in the file, to
	// estimate when the next publication appears; 0 when unknown.
	period uint64
}

func runExtend(c *ucli.Context) error {
	sum := newSummary("extended", extStatusExtended, extStatusAlready, extStatusNotYet, extStatusError)
	sum.failVerb = "were not extended"
	in, err := collectInputs(c, c.Args().Slice(), signatureFiles)
	if err != nil {
		return err
	}
	r := &extendRun{ctx: c.Context, out: c.String(flagOutput), replace: c.Bool(flagReplace), force: c.Bool(flagForce)}
	if err := r.checkFlags(c, in); err != nil {
		return err
	}
	if r.srv, err = serverOptionsFrom(c); err != nil {
		return err
	}
	if r.tg, err = extendTargetFrom(c, r.srv); err != nil {
		return err
	}
	if r.cl, err = r.srv.dial(); err != nil {
		return err
	}
	defer r.cl.Close()
	workers, err := workerCount(c)
	if err != nil {
		return err
	}
	views := make([]extendView, len(in.paths))
	err = eachInput(c, "extending", len(in.paths), workers, func(i int) { views[i] = r.one(in.paths[i]) })
	if err != nil {
		return err
	}
	return reportInputs(c, in.bulk, sum, views)
}

// extendRun is one extend command: where the results go, the server and
// the publication every signature is extended to.
type extendRun struct {
	ctx            context.Context
	out            string // -o: the result of the one signature
	replace, force bool
	srv            serverOptions
	cl             *client.Client
	tg             extendTarget
}

// checkFlags refuses inputs and flags that contradict each other.
func (r *extendRun) checkFlags(c *ucli.Context, in inputs) error {
	switch {
	case len(in.paths) == 0 && in.bulk:
		return usageErrorf("nothing to extend: no signatures (*%s) found", sigSuffix)
	case len(in.paths) == 0:
		return usageErrorf("nothing to extend: give a SIGNATURE file (see 'tempel extend --help')")
	case r.out != "" && r.replace:
		return usageErrorf("-o and --%s both say where the result goes: give one", flagReplace)
	case r.out != "" && in.bulk:
		return usageErrorf("-o names the result for one signature, got %d (without -o each SIGNATURE goes to SIGNATURE%s)", len(in.paths), extSuffix)
	case c.IsSet(flagPubStr) && c.IsSet(flagTime):
		return usageErrorf("--%s and --%s both choose the publication: give one", flagPubStr, flagTime)
	}
	return nil
}

// extendTargetFrom chooses the publication from --pub-str, --time and
// the publications file.
func extendTargetFrom(c *ucli.Context, srv serverOptions) (extendTarget, error) {
	var pubStr *ksi.PublishedData
	if s := c.String(flagPubStr); s != "" {
		pd, err := ksi.ParsePublicationString(s)
		if err != nil {
			return extendTarget{}, usageErrorf("--%s: %s", flagPubStr, trimPkg(err))
		}
		pubStr = &pd
	}
	var atTime uint64
	if c.IsSet(flagTime) {
		var err error
		if atTime, err = parseTimeArg(c.String(flagTime)); err != nil {
			return extendTarget{}, usageErrorf("--%s: %v", flagTime, err)
		}
	}
	pf, err := extendPublicationsFile(c, srv, pubStr != nil)
	if err != nil {
		return extendTarget{}, err
	}
	return chooseTarget(pf, pubStr, atTime, c.IsSet(flagTime))
}

// extendPublicationsFile loads the publications file: always for the
// default and --time; for --pub-str only when one was named or trust
// flags say how to check it, since the string is a trust anchor of its
// own (nil then).
func extendPublicationsFile(c *ucli.Context, srv serverOptions, havePubStr bool) (*ksi.PublicationsFile, error) {
	t := trustOptionsFrom(c)
	if havePubStr && t.pubfile == "" && len(t.roots) == 0 && len(t.cnstr) == 0 && !t.noVerify {
		return nil, nil
	}
	defaulted := t.pubfile == ""
	if defaulted {
		t.pubfile = defaultPubfileURL(srv.endpoints)
	}
	pf, err := loadPublicationsFile(c.Context, nil, t, time.Now())
	if err != nil {
		if defaulted && retryable(err) {
			return nil, inputErrorf("%v (the default --%s is the server's: is 'tempel serve' running at %s?)", err, flagPubfile, srv.endpoints[0])
		}
		return nil, err
	}
	if t.noVerify {
		fmt.Fprintf(c.App.ErrWriter, "%s: WARNING: %s\n", commandName(c), noVerifyWarning)
	}
	return pf, nil
}

func (v extendView) name() string    { return v.Signature }
func (v extendView) outcome() string { return v.Status }
func (v extendView) exitCode() int   { return v.code }
func (v extendView) failed() bool    { return v.Status == extStatusError || v.Status == extStatusNotYet }

func (v extendView) errorLine(bool) string {
	if !v.failed() {
		return ""
	}
	return v.Signature + ": " + v.Message
}

func (v extendView) line() string {
	if v.failed() {
		return ""
	}
	return fmt.Sprintf("%s: %s -> %s (%s)", v.Signature, v.Status, v.Output, v.PublicationString)
}

// chooseTarget picks the publication from the flags and the file.
func chooseTarget(pf *ksi.PublicationsFile, pubStr *ksi.PublishedData, atTime uint64, haveTime bool) (extendTarget, error) {
	switch {
	case pubStr != nil:
		return stringTarget(pf, *pubStr)
	case haveTime:
		return timeTarget(pf, atTime)
	}
	return newestTarget(pf)
}

// stringTarget is the publication of --pub-str. The file's record
// carries the references (where it was printed); the string alone makes
// a bare record.
func stringTarget(pf *ksi.PublicationsFile, pd ksi.PublishedData) (extendTarget, error) {
	if pf != nil {
		if r := pf.PublicationAt(pd.Time); r != nil {
			if !r.Data.Hash.Equal(pd.Hash) {
				return extendTarget{}, inputErrorf("the publications file has a different publication at %s than --%s: one of them is wrong, do not use either before finding out",
					formatTime(pd.Time), flagPubStr)
			}
			return extendTarget{rec: r}, nil
		}
	}
	r, err := ksi.NewPublicationRecord(ksi.TypePublicationRecord, pd, nil, nil)
	if err != nil {
		return extendTarget{}, inputErrorf("--%s: %s", flagPubStr, trimPkg(err))
	}
	return extendTarget{rec: r}, nil
}

// timeTarget is the publication of --time.
func timeTarget(pf *ksi.PublicationsFile, at uint64) (extendTarget, error) {
	if r := pf.PublicationAt(at); r != nil {
		return extendTarget{rec: r}, nil
	}
	msg := fmt.Sprintf("the publications file has no publication at %s", formatTime(at))
	if r := pf.FirstPublicationAfter(at); r != nil {
		msg += fmt.Sprintf("; the next is at %s (%d)", formatTime(r.Data.Time), r.Data.Time)
	}
	return extendTarget{}, usageErrorf("%s; 'tempel pubfile' lists them", msg)
}

// newestTarget is the default: the newest publication of the file.
func newestTarget(pf *ksi.PublicationsFile) (extendTarget, error) {
	latest := pf.Latest()
	if latest == nil {
		return extendTarget{}, &exitError{code: ExitInconclusive, err: errors.New("the publications file has no publications yet; try again after the first one ('tempel pubfile --wait 1m' waits for it)")}
	}
	return extendTarget{rec: latest, newest: true, period: publicationPeriod(pf)}, nil
}

// publicationPeriod is the smallest gap between publications: a server
// publishes at a fixed period, and larger gaps are its downtimes. The
// file is not trusted to be sorted. 0 when unknown.
func publicationPeriod(pf *ksi.PublicationsFile) uint64 {
	times := make([]uint64, 0, len(pf.Publications))
	for _, r := range pf.Publications {
		times = append(times, r.Data.Time)
	}
	slices.Sort(times)
	var period uint64
	for i := 1; i < len(times); i++ {
		if d := times[i] - times[i-1]; d > 0 && (period == 0 || d < period) {
			period = d
		}
	}
	return period
}

// one extends the signature at sigPath and writes the result where the
// flags say; the view tells the outcome.
func (r *extendRun) one(sigPath string) extendView {
	dst := extendedName(sigPath)
	switch {
	case r.replace:
		dst = sigPath
	case r.out != "":
		dst = r.out
	}
	v, code, err := r.extend(sigPath, dst, r.replace || r.force)
	if err != nil {
		v.Status, v.Message = extStatusError, oneLine(err.Error())
		if code == ExitInconclusive {
			v.Status = extStatusNotYet
		}
	}
	v.code = code
	return v
}

// extend extends one signature and writes it to dst. overwrite allows
// replacing an existing dst.
func (r *extendRun) extend(sigPath, dst string, overwrite bool) (extendView, int, error) {
	pub := r.tg.rec.Data
	v := extendView{Signature: sigPath, PublicationString: pub.String(), PublicationTime: formatTime(pub.Time)}
	if isASiC(sigPath) {
		return r.extendASiC(v, dst, overwrite)
	}
	b, err := readFileLimited(sigPath, ksi.MaxObjectSize)
	if err != nil {
		return v, ExitError, fmt.Errorf("cannot read signature: %v", err)
	}
	if isToken(b) {
		return r.extendToken(v, b, dst, overwrite)
	}
	sig, err := ksi.ParseSignature(b)
	if err != nil {
		return v, ExitError, fmt.Errorf("not a valid KSI signature: %s", trimPkg(err))
	}
	v.SigningTime = formatTime(sig.SigningTime())
	if r.alreadyDone(&v, sig, dst, overwrite) {
		return v, ExitOK, nil
	}
	if err := r.reaches(v, sig); err != nil {
		return v, ExitInconclusive, err
	}
	if !overwrite {
		// Before asking the server: a run that cannot write its result
		// should not cost an extension request.
		if err := checkOutputs([]string{dst}, false); err != nil {
			return v, ExitError, err
		}
	}
	ext, code, err := r.fetch(v, sig)
	if err != nil {
		return v, code, err
	}
	if code, err := writeExtended(r.ctx, ext, pub, dst, overwrite); err != nil {
		return v, code, err
	}
	v.Status, v.Output = extStatusExtended, dst
	return v, ExitOK, nil
}

// alreadyDone reports whether there is nothing to do: dst holds the
// signature extended by an earlier run, or the signature already
// reaches the publication. It fills in v when so.
func (r *extendRun) alreadyDone(v *extendView, sig *ksi.Signature, dst string, overwrite bool) bool {
	if !overwrite && dst != v.Signature {
		if done, ok := extendedAlready(sig, dst); ok {
			v.Status, v.Output = extStatusAlready, dst
			v.PublicationString, v.PublicationTime = done.String(), formatTime(done.Time)
			return true
		}
	}
	pub := r.tg.rec.Data
	if pr := sig.PublicationRecord; pr != nil && pr.Data.Time == pub.Time && pr.Data.Hash.Equal(pub.Hash) {
		v.Status = extStatusAlready
		return true
	}
	return false
}

// reaches refuses a signature made after the publication: it cannot be
// extended to it (yet).
func (r *extendRun) reaches(v extendView, sig *ksi.Signature) error {
	pub := r.tg.rec.Data
	if sig.SigningTime() <= pub.Time {
		return nil
	}
	if r.tg.newest {
		return fmt.Errorf("signed at %s, after the newest publication (%s): no publication after the signing time yet; try again after %s",
			v.SigningTime, v.PublicationTime, formatTime(nextPublication(pub.Time, r.tg.period, sig.SigningTime())))
	}
	return fmt.Errorf("signed at %s, after the chosen publication (%s): a signature can only be extended to a later publication", v.SigningTime, v.PublicationTime)
}

// fetch asks the extender for the signature extended to the target.
func (r *extendRun) fetch(v extendView, sig *ksi.Signature) (*ksi.Signature, int, error) {
	ext, err := r.cl.Extend(r.ctx, sig, r.tg.rec)
	if err == nil {
		return ext, ExitOK, nil
	}
	if errors.Is(err, client.ErrOutOfRange) {
		return nil, ExitInconclusive, fmt.Errorf("the calendar at %s does not reach the publication of %s yet; try again later [%s]",
			strings.Join(r.srv.endpoints, ", "), v.PublicationTime, strings.TrimPrefix(err.Error(), "client: "))
	}
	return nil, ExitError, r.srv.serverError(err)
}

// writeExtended checks the extended signature against the publication
// and writes it to dst. The client checked the calendar chain against
// the signature and the publication; this also checks the aggregation
// chains, so that a broken signature is never written out looking
// extended.
func writeExtended(ctx context.Context, ext *ksi.Signature, pub ksi.PublishedData, dst string, overwrite bool) (int, error) {
	rep := verifier.Verify(ctx, ext, verifier.UserPublicationBased, verifier.Options{UserPublication: &pub})
	if rep.Result != verifier.OK {
		code := ExitFailed
		if rep.Result == verifier.NA {
			code = ExitInconclusive
		}
		return code, fmt.Errorf("the extended signature does not verify against the publication: %s (%s, rule %s)", rep.Message, rep.Code, rep.Rule)
	}
	enc, err := ext.Encode()
	if err != nil {
		return ExitError, fmt.Errorf("cannot encode the extended signature: %s", trimPkg(err))
	}
	if err := writeNew(dst, enc, overwrite); err != nil {
		return ExitError, fmt.Errorf("cannot write the extended signature: %v", err)
	}
	return ExitOK, nil
}

// extendedAlready reports whether dst already holds sig extended to a
// publication, as an earlier run left it, so that extending a tree again
// (every night, say) only extends what is new. A dst that is not the same
// signature (another document hash or signing time) is not taken for it.
func extendedAlready(sig *ksi.Signature, dst string) (ksi.PublishedData, bool) {
	b, err := readFileLimited(dst, ksi.MaxObjectSize)
	if err != nil {
		return ksi.PublishedData{}, false
	}
	ext, err := ksi.ParseSignature(b)
	if err != nil || ext.PublicationRecord == nil ||
		!ext.DocumentHash().Equal(sig.DocumentHash()) || ext.SigningTime() != sig.SigningTime() {
		return ksi.PublishedData{}, false
	}
	return ext.PublicationRecord.Data, true
}

// nextPublication estimates the first publication at or after t: the
// publications come every period seconds after last. Unknown period: t.
func nextPublication(last, period, t uint64) uint64 {
	if period == 0 || t <= last {
		return t
	}
	return last + (t-last+period-1)/period*period
}

func (v extendView) writeText(w io.Writer, _ bool) {
	if v.failed() {
		return
	}
	line := func(label, value string) { fmt.Fprintf(w, "  %-16s %s\n", label+":", value) }
	if v.Status == extStatusAlready {
		fmt.Fprintf(w, "%s is already extended to this publication; nothing to do\n", v.Signature)
	} else {
		fmt.Fprintf(w, "extended %s\n", v.Signature)
	}
	line("signed at", v.SigningTime)
	line("published at", v.PublicationTime)
	if v.Output != "" {
		line("written to", v.Output)
	}
	line("publication", v.PublicationString)
}
