package cli

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

// Flags of the verify command (the trust flags are in trust.go).
const (
	flagSig        = "sig"
	flagHash       = "hash"
	flagPubStr     = "pub-str"
	flagPolicy     = "policy"
	flagInputLevel = "input-level"
	flagVerbose    = "verbose"
	flagJSON       = "json"
	flagExtend     = "extend"
	flagSigDir     = "sig-dir"
)

// sigSuffix is appended to a document's name to find its signature, as
// ksi-tool names them (ksi sign -i doc.txt -o doc.txt.ksig).
const sigSuffix = ".ksig"

const verifyDescription = `Verifies each document FILE against its signature, or one document (or
hash) against the signature named by --sig, and prints a short report: the
verdict, the document and its hash, when and by whom it was signed, and
what the signature was checked against.

The signature of FILE is FILE.ksig.ext.ksig (what tempel extend writes)
when it exists, else FILE.ksig. A signature given as FILE (NAME.ksig or
NAME.ksig.ext.ksig) is checked against the document NAME beside it.
--sig-dir DIR looks for DIR/FILE.ksig instead, the tree that 'tempel sign
-o DIR' writes. With --sig and no FILE or --hash, only the signature itself
is checked.

MANY DOCUMENTS: -r DIR takes every document under DIR (files not ending in
.ksig), --from-list LIST one path per line (- for standard input). They
are checked in parallel (--workers, default the number of CPUs), with a
progress bar on a terminal; instead of a report per document, one summary
line is printed (counts by verdict, elapsed time, files per second), a
line per document with -v, and each document that did not verify is named
on standard error.

RFC 3161 TOKENS: a time-stamp response (.tsr) or bare token (.tst), as
'tempel sign --rfc3161' or any RFC 3161 client gets them from Tempel, is
taken in place of a .ksig (told by its content): FILE pairs with FILE.ksig
first, else FILE.tsr.ext.tsr, FILE.tsr (or .tst). Both layers are checked:
the TSA signature and certificate chain against --tsa-root (without it,
that layer is reported as not checked), and the KSI signature inside it,
which must be a signature of this very token at its genTime, with the
policy asked for and the token's message imprint (in the hash algorithm
the token names) as the document hash. So a token extended to a
publication verifies with --pub-str alone. An ASiC-S container (.asics,
'tempel sign --asic') is verified as a whole: its token against the
document inside it. A PDF with an RFC 3161 document time-stamp
(/SubFilter /ETSI.RFC3161, as PDF signers add through POST /tsa) and no
FILE.ksig beside it is verified the same way: its newest document
time-stamp against the bytes that time-stamp covers.

POLICIES (--policy):
   default           publications file, else the key of the calendar
                     authentication record (needs --pubfile)
   internal          the signature's own consistency only; no trust anchor
   key               the calendar authentication record's PKI signature,
                     with a certificate from the publications file
   publication       a publication in the publications file
   user-publication  the publication string given with --pub-str (the
                     default policy when --pub-str is given)
   calendar          the calendar, through the extender at --server (without
                     --server it answers INCONCLUSIVE)

With --server HOST:PORT (or TEMPEL_SERVER, or server in the configuration
file) the calendar policy asks that
server's extender; adding --extend lets the publication-based policies
extend a signature that has no publication yet to the publication they
check it against, on the fly (the signature file is not changed: tempel
extend does that).

A publications file is a trust anchor: give the root certificate of its
signer (--trust-root) and at least one constraint on the signer (--cnstr,
e.g. E=publications@example.org); it is checked at the current time.
--pubfile-no-verify skips that check, for tests only.

OUTPUT:
   Text by default; --verbose adds every verification rule. With --json,
   one JSON object per document, one per line (JSON Lines), with the fields
   verdict (OK, FAILED, INCONCLUSIVE or ERROR), result (OK, FAIL, NA), code,
   rule, message, policy, document, document_hash, signed_hash, signature,
   signing_time, identity, anchor, publication, rules, warnings, hint, error.

   With several documents the summary goes to standard error.

With several documents the exit code is that of the worst outcome, in the
order FAILED (1), ERROR (3), INCONCLUSIVE (2), OK (0), and the last line
names the documents that did not verify.

ENVIRONMENT: TEMPEL_PUBFILE, TEMPEL_TRUST_ROOT, TEMPEL_CNSTR, TEMPEL_SERVER,
TEMPEL_TLS_CA, TEMPEL_USER, TEMPEL_KEY, TEMPEL_CONFIG (one value each).

` + configHelp + `

` + exitCodesHelp

func verifyCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: flagSig, Usage: "signature `PATH` of a single document, or of the --hash, or to check alone"},
		&ucli.StringFlag{Name: flagHash, Usage: "verify the document hash `ALG:HEX` (e.g. SHA-256:11a7…) instead of a FILE; needs --sig"},
		&ucli.StringFlag{Name: flagSigDir, Usage: "find the signature of each FILE under `DIR`, as 'tempel sign -o DIR' wrote it (DIR/FILE.ksig)"},
		&ucli.StringFlag{Name: flagPolicy, Value: verifier.Default.String(), Usage: "verification `POLICY`: default, internal, key, publication, user-publication or calendar"},
		&ucli.StringFlag{Name: flagPubStr, Usage: "trusted publication `STRING` (AAAAAA-…) from print; implies --policy user-publication"},
		&ucli.Uint64Flag{Name: flagInputLevel, Usage: "aggregation tree `LEVEL` of the document hash (when it is the root of a local tree)"},
		&ucli.BoolFlag{Name: flagVerbose, Aliases: []string{"v"}, Usage: "list every verification rule; with several documents, a line per document"},
		&ucli.BoolFlag{Name: flagJSON, Usage: "print one JSON object per document (JSON Lines)"},
		&ucli.BoolFlag{Name: flagExtend, Usage: "let publication-based policies extend the signature on the fly through --server"},
		tsaRootFlag(),
	}
	return &ucli.Command{
		Name:      "verify",
		Usage:     "verify documents against their KSI signatures",
		ArgsUsage: "[FILE...]",
		UsageText: "tempel verify [flags] FILE...             (each FILE against FILE.ksig)\n" +
			"tempel verify [flags] -r DIR...           (every document under DIR)\n" +
			"tempel verify [flags] --from-list LIST    (one path per line, - for standard input)\n" +
			"tempel verify [flags] --sig PATH FILE\n" +
			"tempel verify [flags] --sig PATH --hash ALG:HEX\n" +
			"tempel verify [flags] --sig PATH           (the signature alone)",
		Description: verifyDescription,
		Flags:       append(append(append(flags, inputFlags("documents")...), trustFlags()...), serverFlags(false)...),
		Action:      runVerify,
	}
}

// verifyRequest is a validated verify command line.
type verifyRequest struct {
	policy  verifier.Policy
	userPub *ksi.PublishedData
	level   uint64
	jobs    []verifyJob
	trust   trustOptions
	bulk    bool
	// tsaRoots are --tsa-root, for RFC 3161 tokens; nil for none.
	tsaRoots *x509.CertPool
}

// verifyJob is one signature to check and the document it must match.
type verifyJob struct {
	doc  string      // document file; "" for none
	hash ksi.Imprint // document hash given with --hash
	sig  string      // signature file
	err  error       // why the pair cannot be checked, found while planning
}

func parseVerifyRequest(c *ucli.Context) (*verifyRequest, error) {
	r := &verifyRequest{
		level: c.Uint64(flagInputLevel),
		trust: trustOptionsFrom(c),
	}
	pubStr := c.String(flagPubStr)
	var err error
	if r.policy, err = resolvePolicy(c.String(flagPolicy), c.IsSet(flagPolicy), pubStr != ""); err != nil {
		return nil, err
	}
	if pubStr != "" {
		pd, err := ksi.ParsePublicationString(pubStr)
		if err != nil {
			return nil, usageErrorf("--%s: %s", flagPubStr, trimPkg(err))
		}
		r.userPub = &pd
	}
	var hash ksi.Imprint
	if h := c.String(flagHash); h != "" {
		if hash, err = ksi.ParseImprintText(h); err != nil {
			return nil, usageErrorf("--%s %q: %s (want ALG:HEX, e.g. SHA-256:11a7…)", flagHash, h, trimPkg(err))
		}
	}
	single := hash != nil || c.String(flagSig) != ""
	docs, err := r.documents(c, single)
	if err != nil {
		return nil, err
	}
	sigDir := c.String(flagSigDir)
	if sigDir != "" && single {
		return nil, usageErrorf("--%s is where the signatures of several documents are; --%s and --%s name one signature", flagSigDir, flagSig, flagHash)
	}
	if r.jobs, err = planJobs(docs, c.String(flagSig), sigDir, hash); err != nil {
		return nil, err
	}
	if _, err := r.trust.check(); err != nil {
		return nil, err
	}
	if r.tsaRoots, err = tsaRoots(c); err != nil {
		return nil, err
	}
	return r, nil
}

// documents expands the FILE arguments, -r and --from-list into the
// documents to verify (and sets r.bulk); single tells that --sig or
// --hash names the signature of one document.
func (r *verifyRequest) documents(c *ucli.Context, single bool) ([]string, error) {
	docs := c.Args().Slice()
	many := c.Bool(flagRecursive) || c.IsSet(flagFromList)
	switch {
	case many && single:
		return nil, usageErrorf("--%s and --%s name the signature of one document: -r and --%s check each FILE against its own signature", flagSig, flagHash, flagFromList)
	case many || (len(docs) > 1 && !single):
		in, err := collectInputs(c, docs, documentFiles)
		if err != nil {
			return nil, err
		}
		if len(in.paths) == 0 {
			return nil, usageErrorf("nothing to verify: no documents in %s", strings.Join(append(docs, c.String(flagFromList)), ", "))
		}
		r.bulk = in.bulk
		return in.paths, nil
	case len(docs) == 1 && isDir(docs[0]):
		return nil, usageErrorf("%s is a directory: add -r to verify the documents in it", docs[0])
	}
	return docs, nil
}

// resolvePolicy picks the policy from --policy (explicit tells whether it
// was given) and whether a publication string was given. A publication
// string only means something to the user-publication policy, so it
// selects that policy and conflicts with any other.
func resolvePolicy(name string, explicit, pubStr bool) (verifier.Policy, error) {
	if pubStr && !explicit {
		return verifier.UserPublicationBased, nil
	}
	p, err := verifier.ParsePolicy(name)
	if err != nil {
		return 0, usageErrorf("--%s: %s", flagPolicy, trimPkg(err))
	}
	switch {
	case pubStr && p != verifier.UserPublicationBased:
		return 0, usageErrorf("--%s is only used by the user-publication policy, not %s", flagPubStr, p)
	case !pubStr && p == verifier.UserPublicationBased:
		return 0, usageErrorf("the user-publication policy needs the publication: add --%s STRING", flagPubStr)
	}
	return p, nil
}

// planJobs turns the positional arguments, --sig and --hash into the
// signatures to check.
func planJobs(docs []string, sig, sigDir string, hash ksi.Imprint) ([]verifyJob, error) {
	switch {
	case hash != nil && sig == "":
		return nil, usageErrorf("--%s needs --%s PATH, the signature to check the hash against", flagHash, flagSig)
	case hash != nil && len(docs) > 0:
		return nil, usageErrorf("--%s replaces the document FILE: give one or the other", flagHash)
	case hash != nil:
		return []verifyJob{{hash: hash, sig: sig}}, nil
	case sig != "" && len(docs) > 1:
		return nil, usageErrorf("--%s names the signature of one document, got %d files (without --%s each FILE is checked against FILE%s)",
			flagSig, len(docs), flagSig, sigSuffix)
	case sig != "" && len(docs) == 1:
		return []verifyJob{{doc: docs[0], sig: sig}}, nil
	case sig != "":
		return []verifyJob{{sig: sig}}, nil
	case len(docs) == 0:
		return nil, usageErrorf("nothing to verify: give a document FILE (signed in FILE%s) or --%s PATH (see 'tempel verify --help')", sigSuffix, flagSig)
	}
	jobs := make([]verifyJob, len(docs))
	for i, d := range docs {
		if sigDir != "" {
			jobs[i] = pairUnder(sigDir, d)
			continue
		}
		jobs[i] = pairDocument(d)
	}
	return jobs, nil
}

// pairDocument finds what a FILE argument pairs with. A signature
// (NAME.ksig, or NAME.ksig.ext.ksig as tempel extend writes it) is
// checked against the document NAME beside it. A document is checked
// against its extended signature NAME.ksig.ext.ksig when there is one (it
// reaches a publication, so more can be checked), else NAME.ksig.
func pairDocument(p string) verifyJob {
	if isASiCName(p) {
		return verifyJob{sig: p} // the document is inside
	}
	if isTokenName(p) {
		doc := tokenDocument(p)
		j := verifyJob{doc: doc, sig: p}
		if _, err := os.Stat(doc); err != nil {
			j.err = fmt.Errorf("no document %s beside the token %s: give it with --%s %s DOCUMENT; to check the token %s alone, use --%s %s",
				doc, p, flagSig, p, p, flagSig, p)
		}
		return j
	}
	if isSignatureName(p) {
		doc := strings.TrimSuffix(p, sigSuffix)
		if strings.HasSuffix(p, extSuffix) {
			doc = strings.TrimSuffix(strings.TrimSuffix(p, extSuffix), sigSuffix)
		}
		j := verifyJob{doc: doc, sig: p}
		if _, err := os.Stat(doc); err != nil {
			j.err = fmt.Errorf("no document %s beside the signature %s: give it with --%s %s DOCUMENT; to check the signature %s alone, use --%s %s",
				doc, p, flagSig, p, p, flagSig, p)
		}
		return j
	}
	if ext := p + sigSuffix + extSuffix; fileExists(ext) {
		return verifyJob{doc: p, sig: ext}
	}
	if tok := tokenBeside(p); tok != "" && !fileExists(p+sigSuffix) {
		return verifyJob{doc: p, sig: tok}
	}
	if !fileExists(p+sigSuffix) && isPDF(p) {
		return verifyJob{sig: p} // its document time-stamp is inside
	}
	return verifyJob{doc: p, sig: p + sigSuffix}
}

// pairUnder pairs a document with its signature in the tree that
// 'tempel sign -o DIR' wrote: DIR/PATH.ksig (or its extended form).
func pairUnder(dir, p string) verifyJob {
	base, err := outputUnder(dir, p)
	if err != nil {
		return verifyJob{doc: p, err: err}
	}
	if ext := base + sigSuffix + extSuffix; fileExists(ext) {
		return verifyJob{doc: p, sig: ext}
	}
	return verifyJob{doc: p, sig: base + sigSuffix}
}

func fileExists(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.Mode().IsRegular()
}

func runVerify(c *ucli.Context) error {
	sum := newSummary("verified", verdictOK, verdictFailed, verdictInconclusive, verdictError)
	sum.failVerb = "did not verify"
	r, err := parseVerifyRequest(c)
	if err != nil {
		return err
	}
	// The CLI owns the clock: certificates of the publications file must
	// be valid now.
	pf, err := loadPublicationsFile(c.Context, nil, r.trust, time.Now())
	if err != nil {
		return err
	}
	opts := verifier.Options{InputLevel: r.level, PublicationsFile: pf, UserPublication: r.userPub}
	// Without --server nothing is asked of the network beyond the
	// publications file: the calendar policy answers NA, as ever.
	srv, err := serverOptionsFrom(c)
	if err != nil {
		return err
	}
	switch {
	case len(srv.endpoints) > 0:
		cl, err := srv.dial()
		if err != nil {
			return err
		}
		defer cl.Close()
		opts.Extender = client.CalendarExtender{Client: cl}
		opts.ExtendingAllowed = c.Bool(flagExtend)
	case c.Bool(flagExtend):
		return usageErrorf("--%s extends through a server: add --%s HOST:PORT", flagExtend, flagServer)
	}
	var warnings []string
	if pf != nil && r.trust.noVerify {
		warnings = append(warnings, noVerifyWarning)
	}

	workers, err := workerCount(c)
	if err != nil {
		return err
	}
	views := make([]*verifyView, len(r.jobs))
	err = eachInput(c, "verifying", len(r.jobs), workers, func(i int) {
		j := r.jobs[i]
		v, err := &verifyView{Document: j.doc, Signature: j.sig, Policy: r.policy.String(), policy: r.policy}, j.err
		if err == nil {
			v, err = verifyOne(c.Context, j, r.policy, opts, r.tsaRoots)
		}
		v.Warnings = warnings
		if err != nil {
			v.Verdict, v.Error, v.Result = verdictError, err.Error(), ""
		}
		views[i] = v
	})
	if err != nil {
		return err
	}
	return reportInputs(c, r.bulk, sum, views)
}

func (v *verifyView) name() string    { return v.display() }
func (v *verifyView) outcome() string { return v.Verdict }

// errorLine names on standard error a document that could not be
// checked and, among several, one that did not verify (a single one's
// verdict is in its report).
func (v *verifyView) errorLine(bulk bool) string {
	switch {
	case v.Verdict == verdictError && bulk:
		return v.display() + ": " + oneLine(v.Error)
	case v.Verdict == verdictError:
		return oneLine(v.Error)
	case bulk && v.exitCode() != ExitOK:
		return v.display() + ": " + v.verdictLine()
	}
	return ""
}

func (v *verifyView) line() string {
	if v.Verdict == verdictError {
		return fmt.Sprintf("%s: ERROR: %s", v.display(), oneLine(v.Error))
	}
	return fmt.Sprintf("%s: %s", v.display(), v.verdictLine())
}

// display names the document of a view, or its signature when there is
// no document.
func (v *verifyView) display() string {
	if v.Document != "" {
		return v.Document
	}
	return v.Signature
}

// Verdicts, the first word of a report.
const (
	verdictOK           = "OK"
	verdictFailed       = "FAILED"
	verdictInconclusive = "INCONCLUSIVE"
	verdictError        = "ERROR"
)

// verifyView is the outcome of one verification, as printed (text) and
// encoded (--json).
type verifyView struct {
	Verdict      string                `json:"verdict"`
	Result       string                `json:"result,omitempty"`
	Code         verifier.Code         `json:"code,omitempty"`
	Rule         string                `json:"rule,omitempty"`
	Message      string                `json:"message,omitempty"`
	Policy       string                `json:"policy"`
	Document     string                `json:"document,omitempty"`
	DocumentHash string                `json:"document_hash,omitempty"`
	SignedHash   string                `json:"signed_hash,omitempty"`
	Signature    string                `json:"signature"`
	SigningTime  string                `json:"signing_time,omitempty"`
	Identity     string                `json:"identity,omitempty"`
	Anchor       string                `json:"anchor,omitempty"`
	Publication  string                `json:"publication,omitempty"`
	Rules        []verifier.RuleResult `json:"rules,omitempty"`
	Warnings     []string              `json:"warnings,omitempty"`
	Hint         string                `json:"hint,omitempty"`
	Error        string                `json:"error,omitempty"`
	// Token is the TSA layer of an RFC 3161 token, nil for a .ksig.
	Token *tokenView `json:"token,omitempty"`

	result verifier.Result
	policy verifier.Policy
	byHash bool // the document was given as --hash
	// missing says in plain words what the user must give for a verdict,
	// before the KSI code in the verdict line.
	missing string
}

func (v *verifyView) exitCode() int {
	switch v.Verdict {
	case verdictOK:
		return ExitOK
	case verdictFailed:
		return ExitFailed
	case verdictInconclusive:
		return ExitInconclusive
	}
	return ExitError
}

// severity orders exit codes from best to worst for a run over several
// documents: a failed document is the most important news, then one that
// could not be read, then one that could not be decided.
var severity = map[int]int{ExitOK: 0, ExitInconclusive: 1, ExitError: 2, ExitFailed: 3}

func worse(a, b int) int {
	if severity[b] > severity[a] {
		return b
	}
	return a
}

// verifyOne checks one signature. The view is filled as far as the
// inputs could be read; an error means the check could not be made.
func verifyOne(ctx context.Context, j verifyJob, p verifier.Policy, opts verifier.Options, tsaRoots *x509.CertPool) (*verifyView, error) {
	v := &verifyView{Policy: p.String(), policy: p, Document: j.doc, Signature: j.sig, byHash: j.hash != nil}
	if isASiC(j.sig) {
		return verifyASiC(ctx, j, p, opts, tsaRoots, v)
	}
	if isPDF(j.sig) {
		return verifyPDF(ctx, j, p, opts, tsaRoots, v)
	}
	// Open the document first: when it is missing, that is the news, not
	// its missing signature. It is hashed once the signature names the
	// algorithm.
	var docFile *os.File
	if j.doc != "" {
		f, err := os.Open(j.doc)
		if err != nil {
			return v, fmt.Errorf("cannot read document: %v", err)
		}
		defer f.Close()
		docFile = f
	}
	b, err := readJobFile(j)
	if err != nil {
		return v, err
	}
	if isToken(b) {
		return verifyToken(ctx, j, b, docFile, p, opts, tsaRoots, v)
	}
	sig, err := ksi.ParseSignature(b)
	if err != nil {
		return v, fmt.Errorf("%s is not a valid KSI signature: %s", j.sig, trimPkg(err))
	}
	v.describe(sig)
	doc := j.hash
	if docFile != nil {
		if doc, err = hashDocument(docFile, sig.DocumentHash().Alg()); err != nil {
			return v, err
		}
	}
	if doc != nil {
		v.DocumentHash = doc.String()
	}
	opts.Document = doc
	v.setReport(verifier.Verify(ctx, sig, p, opts), opts.PublicationsFile != nil)
	return v, nil
}

// readJobFile reads the signature (or token) of a job; a missing one
// gets a hint on what was probably meant.
func readJobFile(j verifyJob) ([]byte, error) {
	b, err := readFileLimited(j.sig, ksi.MaxObjectSize)
	missing := errors.Is(err, fs.ErrNotExist) && j.doc != ""
	switch {
	case missing && strings.HasSuffix(j.doc, sigSuffix):
		return nil, fmt.Errorf("cannot read signature: %v (to check the signature %s alone, use --%s %s)", err, j.doc, flagSig, j.doc)
	case missing && j.sig == j.doc+sigSuffix:
		return nil, fmt.Errorf("cannot read signature: %v (no signature beside %s: sign it with 'tempel sign %s', or name its signature with --%s PATH)",
			err, j.doc, j.doc, flagSig)
	case err != nil:
		return nil, fmt.Errorf("cannot read signature: %v", err)
	}
	return b, nil
}

// describe fills in what the signature says of itself.
func (v *verifyView) describe(sig *ksi.Signature) {
	v.SignedHash = sig.DocumentHash().String()
	v.SigningTime = formatTime(sig.SigningTime())
	v.Identity = strings.Join(sig.Identity(), " :: ")
	if sig.PublicationRecord != nil {
		v.Publication = sig.PublicationRecord.Data.String()
	}
}

// setReport fills in the verifier's report and the verdict it makes;
// havePubfile tells whether a publications file was given.
func (v *verifyView) setReport(rep *verifier.Report, havePubfile bool) {
	p := v.policy
	v.result, v.Result, v.Code, v.Rule, v.Message, v.Rules = rep.Result, rep.Result.String(), rep.Code, rep.Rule, rep.Message, rep.Rules
	switch rep.Result {
	case verifier.OK:
		v.Verdict = verdictOK
		v.Anchor = rep.Anchor
		if v.Anchor == "" && p == verifier.Internal {
			v.Anchor = "internal consistency only"
		}
	case verifier.FAIL:
		v.Verdict = verdictFailed
	default:
		v.Verdict = verdictInconclusive
		v.Hint = inconclusiveHint(p, rep, havePubfile)
		if needsPubfile(p) && !havePubfile {
			v.missing = missingPubfile
		}
	}
}

// hashDocument hashes a document with alg, streaming: documents can be
// large.
func hashDocument(f *os.File, alg ksi.HashAlg) (ksi.Imprint, error) {
	h, err := alg.New()
	if err != nil {
		return nil, fmt.Errorf("cannot hash %s with %s, the algorithm of the signature: %s", f.Name(), alg, trimPkg(err))
	}
	if _, err := io.Copy(h, f); err != nil {
		return nil, fmt.Errorf("cannot read document: %v", err)
	}
	return ksi.NewImprint(alg, h.Sum(nil))
}

// inconclusiveHint tells the user what would let the verification decide.
func inconclusiveHint(p verifier.Policy, rep *verifier.Report, havePubfile bool) string {
	switch {
	case p == verifier.CalendarBased && rep.Rule == "ExtenderPresent":
		return "the calendar policy asks the calendar through an extender: add --server HOST:PORT, or use --policy key, publication or user-publication"
	case rep.Rule == "ExtendingPermitted" || rep.Rule == "ExtenderPresent":
		return "the signature must first be extended to the publication: run 'tempel extend', or verify with --server HOST:PORT --extend; --policy key checks a calendar authentication record instead"
	case rep.Rule == "ExtendSignature":
		return "the extender at --server could not be asked; is the server running, and does its calendar reach the publication?"
	case !havePubfile && (p == verifier.Default || p == verifier.KeyBased || p == verifier.PublicationsFileBased):
		return "give a publications file (--pubfile with --trust-root and --cnstr, or pubfile, trust-root and cnstr in the config file " + defaultConfigHint() + ") or a publication string (--pub-str)"
	}
	return ""
}

// missingPubfile is the verdict of a policy that needed a publications
// file nobody named.
const missingPubfile = "no publications file given: pass --" + flagPubfile + " or set it in the config"

// needsPubfile reports whether policy p can only decide with a
// publications file.
func needsPubfile(p verifier.Policy) bool {
	return p == verifier.Default || p == verifier.KeyBased || p == verifier.PublicationsFileBased
}

// policyText explains what each policy checks against, for people.
var policyText = map[verifier.Policy]string{
	verifier.Default:               "default (publications file, else the calendar authentication record's key)",
	verifier.Internal:              "internal (the signature's own consistency, no trust anchor)",
	verifier.KeyBased:              "key (the calendar authentication record's PKI signature)",
	verifier.PublicationsFileBased: "publication (a publication in the publications file)",
	verifier.UserPublicationBased:  "user-publication (the publication string given with --pub-str)",
	verifier.CalendarBased:         "calendar (the calendar, through an extender server)",
}

// verdictLine is the first line of a report, e.g.
// "FAILED: wrong document (GEN-01)".
func (v *verifyView) verdictLine() string {
	switch v.result {
	case verifier.OK:
		return "OK: signature verified"
	case verifier.FAIL:
		text := v.Code.Text()
		if text == "" { // a code of the TSA layer
			text = v.Message
		}
		return fmt.Sprintf("FAILED: %s (%s)", lowerFirst(text), v.Code)
	}
	what := v.detail()
	if v.missing != "" {
		what = v.missing
	}
	if what == "" {
		what = lowerFirst(v.Code.Text())
	}
	return fmt.Sprintf("INCONCLUSIVE: %s (%s)", what, v.Code)
}

// detail is the part of the message after the code's standard text.
func (v *verifyView) detail() string {
	return strings.TrimPrefix(strings.TrimPrefix(v.Message, v.Code.Text()), ": ")
}

func (v *verifyView) writeText(w io.Writer, verbose bool) {
	if v.Verdict == verdictError {
		return
	}
	fmt.Fprintln(w, v.verdictLine())
	// Warnings come right under the verdict: they qualify it.
	for _, s := range v.Warnings {
		fmt.Fprintf(w, "  WARNING: %s\n", s)
	}
	line := func(label, value string) { fmt.Fprintf(w, "  %-16s %s\n", label+":", value) }
	if v.result == verifier.FAIL {
		if d := v.detail(); d != "" {
			line("reason", d)
		}
	}
	line("document", v.documentText())
	if v.DocumentHash != "" {
		line("document hash", v.DocumentHash)
	}
	if v.DocumentHash != v.SignedHash {
		line("signed hash", v.SignedHash)
	}
	line("signature", v.Signature)
	if v.Token != nil {
		v.Token.writeText(w)
	}
	line("signed at", v.SigningTime)
	if v.Identity != "" {
		line("signed by", v.Identity)
	} else {
		line("signed by", "(no identity recorded)")
	}
	if v.Token != nil && !v.Token.KSIInToken {
		line("policy", "none: the token carries no KSI signature")
	} else {
		line("policy", policyText[v.policy])
	}
	if v.Anchor != "" {
		if v.policy == verifier.Internal {
			line("checked against", "nothing outside the signature: internal consistency only (give --pubfile or --pub-str for a full check)")
		} else {
			line("checked against", v.Anchor)
		}
	}
	if v.Publication != "" {
		line("publication", v.Publication)
	}
	if v.Hint != "" {
		line("hint", v.Hint)
	}
	if verbose {
		writeRules(w, v.Rules)
	}
}

// documentText says what the document was.
func (v *verifyView) documentText() string {
	switch {
	case v.Document != "":
		return v.Document
	case v.byHash:
		return "(given by its hash)"
	}
	return "(none given: the signature was checked alone)"
}

// writeRules lists every verification rule with its result (--verbose).
func writeRules(w io.Writer, rules []verifier.RuleResult) {
	fmt.Fprintln(w, "  rules:")
	for _, r := range rules {
		if r.Code == verifier.CodeNone {
			fmt.Fprintf(w, "    %-4s %s\n", r.Result, r.Rule)
		} else {
			fmt.Fprintf(w, "    %-4s %s: %s %s\n", r.Result, r.Rule, r.Code, r.Message)
		}
	}
}

// lowerFirst lower-cases the first letter of a sentence for use after a
// colon, but leaves acronyms ("PKI signature …") alone.
func lowerFirst(s string) string {
	if len(s) < 2 || s[1] < 'a' || s[1] > 'z' {
		return s
	}
	return strings.ToLower(s[:1]) + s[1:]
}

// formatTime writes POSIX seconds as RFC 3339 in UTC, e.g.
// 2014-04-30T15:19:13Z.
func formatTime(t uint64) string {
	return time.Unix(int64(t), 0).UTC().Format(time.RFC3339)
}
