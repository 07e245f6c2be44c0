package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/ksi"
)

const signDescription = `Signs each FILE and writes its signature next to it as FILE.ksig (the
name tempel verify and ksi-tool look for). Existing signatures are never
overwritten without --force.

All files are signed with as few requests as the server allows (usually
ONE): they are hashed and aggregated locally into a hash tree whose root
the server signs, so every signature carries the same signing time. Each
leaf is blinded with a mask (docs/design/masking.md), so that no signature reveals
the hash of another file of the batch; --no-mask turns that off.

INPUTS:
   FILE...             files; - for standard input (alone, with -o PATH)
   -r DIR              every file under DIR (signatures *.ksig skipped)
   --from-list FILE    one path per line (- for standard input)
   --hash ALG:HEX      a hash computed elsewhere, with -o PATH
   (at most 1,000,000 files a run; files are hashed and written by
   --workers goroutines, default the number of CPUs)

   tempel sign report.pdf minutes.txt      writes report.pdf.ksig, minutes.txt.ksig
   tempel sign -r records/ -o sigs/        sigs/records/….ksig, the same tree
   find . -name '*.xml' | tempel sign --from-list -
   tempel sign -o out.ksig report.pdf      one file, signature to out.ksig
   tempel sign -o doc.ksig - < doc.txt     standard input
   tempel sign -H SHA-512 report.pdf       hash with SHA-512 (default SHA-256)
   tempel sign --hash SHA-256:HEX -o x.ksig   a hash computed elsewhere

-o names the signature file of a single input; with several inputs (or
-r, --from-list, or an existing directory, or a name ending in /) it is a
directory that receives FILE.ksig under the path FILE was given by.

HASH ALGORITHMS (-H, --hash): SHA-256 (default), SHA-384, SHA-512,
SHA3-224, SHA3-256, SHA3-384, SHA3-512, RIPEMD-160. Deprecated ones (SHA-1,
since 2016-07-01) and obsolete ones are refused before anything is sent.

The server is --server (default ` + defaultServer + `, TEMPEL_SERVER, or the
config file, see 'tempel verify --help'); a development server ('tempel
serve') needs no credentials.

OUTPUT: for one input, the signing time (UTC), the identity recorded by the
servers and the signature's path. With several inputs, one summary line
(counts, elapsed time, files per second), a progress bar on a terminal,
and a line per file only with -v. --json prints one JSON object per file
(JSON Lines) with the fields document, document_hash, signature,
signing_time, signing_time_unix, identity, and error for a file that
failed; the summary then goes to standard error.

RFC 3161: --rfc3161 asks the server's time-stamping front door (POST /tsa)
for a token of each FILE instead (one request per file, with a random
nonce and the TSA certificate asked for) and writes the TimeStampResp to
FILE.tsr (-o PATH for one FILE) once it is checked: granted, the nonce
echoed, the file's hash as its message imprint, and the KSI signature
inside verifying against it. Such a token is also a KSI signature:
tempel verify, extend and inspect take it in place of a .ksig.

   tempel sign --rfc3161 report.pdf        writes report.pdf.tsr

--asic writes an ASiC-S container FILE.asics instead (ETSI EN 319 162-1: a
ZIP of mimetype, the document and META-INF/timestamp.tst, the bare token),
which tempel verify and extend take as a whole.

   tempel sign --asic report.pdf           writes report.pdf.asics

A file that cannot be read is named on standard error and the others are
still signed; the run then ends with exit code 3 and a line naming the
failed files.

` + exitCodesHelp

// Flags of the sign command.
const (
	flagHashAlg = "hash-alg"
	flagNoMask  = "no-mask"
)

func signCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Usage: "write the signature to `PATH` (one input), or under the directory PATH (several inputs, keeping their tree)"},
		&ucli.StringFlag{Name: flagHash, Usage: "sign the document hash `ALG:HEX` instead of a file; needs -o"},
		&ucli.StringFlag{Name: flagHashAlg, Aliases: []string{"H"}, Value: ksi.SHA2_256.String(), Usage: "hash files with `ALG` (SHA-256, SHA-384, SHA-512, SHA3-256, SHA3-512, RIPEMD-160, …)"},
		&ucli.BoolFlag{Name: flagForce, Aliases: []string{"f"}, Usage: "overwrite existing signature files"},
		&ucli.BoolFlag{Name: flagVerbose, Aliases: []string{"v"}, Usage: "with several inputs, print a line per file"},
		&ucli.BoolFlag{Name: flagJSON, Usage: "print one JSON object per signed document (JSON Lines)"},
		&ucli.BoolFlag{Name: flagNoMask, Usage: "do not blind the leaves of a batch: each signature then shows its neighbours' hashes"},
		rfc3161Flag(),
		asicFlag(),
	}
	flags = append(flags, inputFlags("files")...)
	return &ucli.Command{
		Name:      "sign",
		Usage:     "sign files (or a hash) with a Tempel server",
		ArgsUsage: "FILE...",
		UsageText: "tempel sign [flags] FILE...\ntempel sign [flags] -r DIR... [-o DIR]\ntempel sign [flags] --from-list LIST\n" +
			"tempel sign [flags] -o PATH -\ntempel sign [flags] --hash ALG:HEX -o PATH",
		Description: signDescription,
		Flags:       append(flags, serverFlags(true)...),
		Action:      runSign,
	}
}

// signJob is one document to sign, where its signature goes, and what
// became of it.
type signJob struct {
	doc  string      // file name, "-" for standard input, "" for --hash
	hash ksi.Imprint // known up front for --hash, else computed
	out  string
	sig  *ksi.Signature
	err  error // why this file failed; the others go on
}

// signView is what sign prints about one signature.
type signView struct {
	Document        string `json:"document,omitempty"`
	DocumentHash    string `json:"document_hash,omitempty"`
	Signature       string `json:"signature,omitempty"`
	SigningTime     string `json:"signing_time,omitempty"`
	SigningTimeUnix uint64 `json:"signing_time_unix,omitempty"`
	Identity        string `json:"identity,omitempty"`
	Error           string `json:"error,omitempty"`

	display string // how messages name the document
}

// signPlan is a validated sign command line.
type signPlan struct {
	jobs   []signJob
	alg    ksi.HashAlg
	bulk   bool
	outDir bool // -o names a directory that receives the tree
}

func planSign(c *ucli.Context, now time.Time) (*signPlan, error) {
	alg, err := signAlg(c.String(flagHashAlg), now)
	if err != nil {
		return nil, usageErrorf("-H %s", err)
	}
	if h := c.String(flagHash); h != "" {
		return planSignHash(c, h, alg, now)
	}
	args := c.Args().Slice()
	in, err := collectInputs(c, args, documentFiles)
	if err != nil {
		return nil, err
	}
	if len(in.paths) == 0 {
		return nil, nothingToSign(c, args)
	}
	out := c.String(flagOutput)
	p := &signPlan{alg: alg, bulk: in.bulk, outDir: out != "" && (in.bulk || strings.HasSuffix(out, "/") || isDir(out))}
	if p.outDir && strings.HasSuffix(out, sigSuffix) {
		return nil, usageErrorf("-o %s names one signature file, but there are %d inputs: give -o a directory to keep their tree under", out, len(in.paths))
	}
	p.jobs = make([]signJob, len(in.paths))
	outs := make([]string, len(in.paths))
	for i, a := range in.paths {
		if p.jobs[i], err = p.fileJob(a, out); err != nil {
			return nil, err
		}
		outs[i] = p.jobs[i].out
	}
	return p, checkOutputs(outs, c.Bool(flagForce))
}

// nothingToSign says why a command line names no file.
func nothingToSign(c *ucli.Context, args []string) error {
	if c.Bool(flagRecursive) || c.IsSet(flagFromList) {
		return usageErrorf("nothing to sign: no files in %s", strings.Join(append(args, c.String(flagFromList)), ", "))
	}
	return usageErrorf("nothing to sign: give a FILE, - for standard input, or --%s (see 'tempel sign --help')", flagHash)
}

// planSignHash plans signing the hash given with --hash ALG:HEX; alg is
// the -H algorithm, which must agree when given.
func planSignHash(c *ucli.Context, h string, alg ksi.HashAlg, now time.Time) (*signPlan, error) {
	out := c.String(flagOutput)
	if c.NArg() > 0 || c.Bool(flagRecursive) || c.IsSet(flagFromList) {
		return nil, usageErrorf("--%s replaces the FILE: give one or the other", flagHash)
	}
	if out == "" {
		return nil, usageErrorf("--%s needs -o PATH: there is no file to put the signature next to", flagHash)
	}
	imp, err := ksi.ParseImprintText(h)
	if err != nil {
		return nil, usageErrorf("--%s %q: %s (want ALG:HEX, e.g. SHA-256:11a7…)", flagHash, h, trimPkg(err))
	}
	if _, err := signAlg(imp.Alg().String(), now); err != nil {
		return nil, usageErrorf("--%s: %s", flagHash, err)
	}
	if c.IsSet(flagHashAlg) && imp.Alg() != alg {
		return nil, usageErrorf("-H %s and --%s %s name different algorithms: the hash says which one it is, drop -H", alg, flagHash, imp.Alg())
	}
	return &signPlan{jobs: []signJob{{hash: imp, out: out}}, alg: imp.Alg()}, checkOutputs([]string{out}, c.Bool(flagForce))
}

// fileJob is the job of the document a, its signature going where -o
// (out) says: beside it, to out, or under the directory out.
func (p *signPlan) fileJob(a, out string) (signJob, error) {
	j := signJob{doc: a, out: a + sigSuffix}
	switch {
	case a == "-" && p.bulk:
		return j, usageErrorf("standard input (-) can only be signed alone")
	case a == "-" && (out == "" || p.outDir):
		return j, usageErrorf("standard input (-) has no name to put the signature next to: add -o PATH")
	case p.outDir:
		o, err := outputUnder(out, a)
		if err != nil {
			return j, usageErrorf("%v", err)
		}
		j.out = o + sigSuffix
	case out != "":
		j.out = out
	}
	return j, nil
}

// signAlg parses a document hash algorithm and refuses those that must
// not be used for a new signature at now, naming the date.
func signAlg(name string, now time.Time) (ksi.HashAlg, error) {
	alg, err := ksi.ParseHashAlg(name)
	if err != nil {
		return 0, fmt.Errorf("%s: %s", name, trimPkg(err))
	}
	t := uint64(now.Unix())
	switch {
	case !alg.Known():
		return 0, fmt.Errorf("%s is not a KSI hash algorithm", name)
	case alg.Obsolete(t):
		return 0, fmt.Errorf("%s is obsolete since %s: it is not accepted for new signatures", alg, formatTime(alg.ObsoleteFrom()))
	case alg.Deprecated(t):
		return 0, fmt.Errorf("%s is deprecated since %s: it is not accepted for new signatures", alg, formatTime(alg.DeprecatedFrom()))
	case !alg.Supported():
		return 0, fmt.Errorf("%s is not supported by tempel: it cannot compute or verify it", alg)
	}
	return alg, nil
}

func runSign(c *ucli.Context) error {
	if c.Bool(flagRFC3161) || c.Bool(flagASiC) {
		return runSignRFC3161(c)
	}
	sum := newSummary("signed", "signed", "failed")
	p, err := planSign(c, time.Now())
	if err != nil {
		return err
	}
	srv, err := serverOptionsFrom(c)
	if err != nil {
		return err
	}
	workers, err := workerCount(c)
	if err != nil {
		return err
	}
	hashJobs(c, p, workers)
	if !p.bulk && p.jobs[0].err != nil {
		return p.jobs[0].err
	}
	var todo []int
	for i := range p.jobs {
		if p.jobs[i].err == nil {
			todo = append(todo, i)
		}
	}
	if len(todo) > 0 {
		if err := signJobs(c, srv, p, todo); err != nil {
			return err
		}
		writeSignatures(c, p, todo, workers)
	}
	if !p.bulk {
		if err := p.jobs[0].err; err != nil {
			return err
		}
	}
	return reportInputs(c, p.bulk, sum, signViews(p))
}

// hashJobs fills in the hash of every file job, in parallel and
// streaming (files may be large). A file that cannot be read gets its
// error and is left out of the request.
func hashJobs(c *ucli.Context, p *signPlan, workers int) {
	var b *bar
	if len(p.jobs) == 1 && p.jobs[0].doc != "" && p.jobs[0].doc != "-" {
		if fi, err := os.Stat(p.jobs[0].doc); err == nil {
			b = newBytesBar(c, "hashing", fi.Size())
		}
	} else {
		b = newFilesBar(c, "hashing", len(p.jobs))
	}
	defer b.done()
	single := len(p.jobs) == 1
	parallel(c.Context, len(p.jobs), workers, func(i int) {
		j := &p.jobs[i]
		if j.hash == nil {
			var tee *bar
			if single {
				tee = b
			}
			j.hash, j.err = hashFile(j.doc, p.alg, tee)
		}
		if !single {
			b.add(1)
		}
	})
	if err := c.Context.Err(); err != nil {
		for i := range p.jobs {
			if p.jobs[i].hash == nil && p.jobs[i].err == nil {
				p.jobs[i].err = err
			}
		}
	}
}

func hashFile(name string, alg ksi.HashAlg, b *bar) (ksi.Imprint, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, inputErrorf("cannot read document: %v", err)
		}
		defer f.Close()
		if fi, err := f.Stat(); err == nil && fi.IsDir() {
			return nil, inputErrorf("%s is a directory: add -r to sign the files in it", name)
		}
		r = f
	}
	h, err := alg.New()
	if err != nil {
		return nil, inputErrorf("cannot hash with %s: %s", alg, trimPkg(err))
	}
	if b != nil {
		r = io.TeeReader(r, b)
	}
	if _, err := io.Copy(h, r); err != nil {
		return nil, inputErrorf("cannot read %s: %v", name, err)
	}
	return ksi.NewImprint(alg, h.Sum(nil))
}

// signJobs signs the hashes of the jobs todo. A failure here is the
// server's or the connection's, the same for every file, so it ends the
// run with one message.
func signJobs(c *ucli.Context, srv serverOptions, p *signPlan, todo []int) error {
	cl, err := srv.dial()
	if err != nil {
		return err
	}
	defer cl.Close()
	hashes := make([]ksi.Imprint, len(todo))
	for k, i := range todo {
		hashes[k] = p.jobs[i].hash
	}
	sigs, err := signMany(c.Context, cl, hashes, c.Bool(flagNoMask))
	if err != nil {
		return srv.serverError(err)
	}
	if len(sigs) != len(hashes) {
		return inputErrorf("the client returned %d signatures for %d hashes", len(sigs), len(hashes))
	}
	for k, i := range todo {
		p.jobs[i].sig = sigs[k]
	}
	return nil
}

// writeSignatures encodes and writes the signatures of the jobs todo in
// parallel; with -o DIR the directories of the tree are created.
func writeSignatures(c *ucli.Context, p *signPlan, todo []int, workers int) {
	b := newFilesBar(c, "writing", len(todo))
	defer b.done()
	force := c.Bool(flagForce)
	parallel(context.Background(), len(todo), workers, func(k int) {
		j := &p.jobs[todo[k]]
		defer b.add(1)
		enc, err := j.sig.Encode()
		if err != nil {
			j.err = inputErrorf("cannot encode the signature of %s: %s", j.display(), trimPkg(err))
			return
		}
		if dir := filepath.Dir(j.out); p.outDir && dir != "." {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				j.err = inputErrorf("cannot write signature: %v", err)
				return
			}
		}
		if err := writeNew(j.out, enc, force); err != nil {
			j.err = inputErrorf("cannot write signature: %v", err)
		}
	})
}

// signViews are the results of the jobs, for [reportInputs].
func signViews(p *signPlan) []signView {
	views := make([]signView, len(p.jobs))
	for i := range p.jobs {
		j := &p.jobs[i]
		v := signView{Document: j.doc, Signature: j.out, display: j.display()}
		if j.hash != nil {
			v.DocumentHash = j.hash.String()
		}
		if j.err != nil {
			v.Signature, v.Error = "", oneLine(j.err.Error())
		} else {
			v.SigningTime = formatTime(j.sig.SigningTime())
			v.SigningTimeUnix = j.sig.SigningTime()
			v.Identity = strings.Join(j.sig.Identity(), " :: ")
		}
		views[i] = v
	}
	return views
}

func (v signView) name() string { return v.display }

func (v signView) outcome() string {
	if v.Error != "" {
		return "failed"
	}
	return "signed"
}

func (v signView) exitCode() int {
	if v.Error != "" {
		return ExitError
	}
	return ExitOK
}

func (v signView) errorLine(bool) string {
	if v.Error == "" {
		return ""
	}
	return v.display + ": " + v.Error
}

func (v signView) line() string {
	if v.Error != "" {
		return ""
	}
	return fmt.Sprintf("signed %s -> %s (%s)", v.display, v.Signature, v.SigningTime)
}

func (v signView) writeText(out io.Writer, _ bool) {
	if v.Error != "" {
		return
	}
	fmt.Fprintf(out, "signed %s\n", v.display)
	line := func(label, value string) { fmt.Fprintf(out, "  %-16s %s\n", label+":", value) }
	line("document hash", v.DocumentHash)
	line("signed at", v.SigningTime)
	if v.Identity != "" {
		line("signed by", v.Identity)
	}
	line("signature", v.Signature)
}

func (j signJob) display() string {
	switch j.doc {
	case "":
		return "the given hash"
	case "-":
		return "standard input"
	}
	return j.doc
}
