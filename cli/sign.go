package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/ksi"
)

// Flags shared by the commands that talk to a Tempel server (sign, extend,
// pubfile, verify) and by the commands that write files.
const (
	flagServer    = "server"
	flagUser      = "user"
	flagKey       = "key"
	flagMachineID = "machine-id"
	flagTimeout   = "timeout"
	flagOutput    = "output"
	flagForce     = "force"

	// defaultServer is where `tempel serve` listens by default, so that
	// the tour works without any flag.
	defaultServer = "127.0.0.1:8080"
)

// serverFlags are the flags naming a Tempel server and the credentials to
// use there. withDefault gives --server the address `tempel serve` uses;
// verify passes false, because there a server is an explicit choice (it
// turns on the calendar policy and extending).
func serverFlags(withDefault bool) []ucli.Flag {
	server := &ucli.StringSliceFlag{
		Name:    flagServer,
		EnvVars: []string{"TEMPEL_SERVER"},
		Usage:   "Tempel server `ADDR`: https://HOST:PORT (TLS), HOST:PORT or http://HOST:PORT (plaintext); repeat or separate with commas for high availability (each call goes to all, the first valid answer wins)",
	}
	if withDefault {
		server.Value = ucli.NewStringSlice(defaultServer)
	}
	return []ucli.Flag{
		server,
		tlsCAFlag(),
		&ucli.StringFlag{Name: flagUser, EnvVars: []string{"TEMPEL_USER"}, Usage: "`LOGIN` at the server (not needed by a development server)"},
		// The key is better passed in the environment: a command line is
		// visible to every user of the machine (ps).
		&ucli.StringFlag{Name: flagKey, EnvVars: []string{"TEMPEL_KEY"}, Usage: "`KEY` of --user (prefer TEMPEL_KEY: command lines are visible in ps)"},
		&ucli.StringFlag{Name: flagMachineID, EnvVars: []string{"TEMPEL_MACHINE_ID"}, Usage: "`NAME` of this machine, recorded in the signature's metadata"},
		&ucli.DurationFlag{Name: flagTimeout, Value: client.DefaultTimeout, Usage: "`DURATION` bound for one call to one server (signing waits for the next calendar second)"},
	}
}

// serverOptions are the values of [serverFlags].
type serverOptions struct {
	endpoints []string
	login     string
	key       string
	machineID string
	timeout   time.Duration
	tlsCAs    []string
}

func serverOptionsFrom(c *ucli.Context) (serverOptions, error) {
	s := serverOptions{
		login:     c.String(flagUser),
		key:       c.String(flagKey),
		machineID: c.String(flagMachineID),
		timeout:   c.Duration(flagTimeout),
		tlsCAs:    c.StringSlice(flagTLSCA),
	}
	// The app disables urfave's own comma splitting (constraints contain
	// commas), so addresses are split here: --server a,b and
	// TEMPEL_SERVER=a,b both name two servers.
	for _, v := range c.StringSlice(flagServer) {
		for _, a := range strings.Split(v, ",") {
			a = strings.TrimSpace(a)
			if a == "" {
				continue
			}
			if _, _, err := client.ParseEndpoint(a); err != nil {
				return s, usageErrorf("--%s: %s", flagServer, strings.TrimPrefix(err.Error(), "client: "))
			}
			s.endpoints = append(s.endpoints, a)
		}
	}
	if s.key != "" && s.login == "" {
		return s, usageErrorf("--%s (TEMPEL_KEY) is the key of a user: add --%s LOGIN (TEMPEL_USER)", flagKey, flagUser)
	}
	if s.timeout <= 0 {
		return s, usageErrorf("--%s %s: must be positive", flagTimeout, s.timeout)
	}
	return s, nil
}

// dial makes a client; it connects lazily, so a server that is down is
// only noticed (and reported by [serverError]) at the first call.
func (s serverOptions) dial() (*client.Client, error) {
	tc, err := tlsConfigFrom(s.tlsCAs)
	if err != nil {
		return nil, err
	}
	cl, err := client.New(client.Config{
		TLS:       tc,
		Endpoints: s.endpoints,
		Login:     s.login,
		Key:       s.key,
		MachineID: s.machineID,
		Timeout:   s.timeout,
	})
	if err != nil {
		return nil, inputErrorf("%s", strings.TrimPrefix(err.Error(), "client: "))
	}
	return cl, nil
}

// serverError turns a client error into one line that says what to do
// about it. The client's messages name the endpoint but not the remedy.
func (s serverOptions) serverError(err error) error {
	detail := strings.TrimPrefix(err.Error(), "client: ")
	where := strings.Join(s.endpoints, ", ")
	switch {
	case errors.Is(err, client.ErrUnavailable) && strings.Contains(detail, "x509: "):
		return inputErrorf("the server at %s presented a certificate this client does not trust: give its CA with --%s FILE (TEMPEL_TLS_CA; a development server's is DATA-DIR/keys/root.pem) [%s]",
			where, flagTLSCA, detail)
	case errors.Is(err, client.ErrUnavailable) && strings.Contains(detail, "server preface") && !strings.Contains(where, "https://"):
		return inputErrorf("the server at %s closed the connection before answering in plaintext: if it serves TLS, name it https://HOST:PORT (else it may be refusing connections) [%s]", where, detail)
	case errors.Is(err, client.ErrUnavailable):
		return inputErrorf("cannot reach a Tempel server at %s: is it running? Start one with 'tempel serve', or point --%s (TEMPEL_SERVER) at one [%s]",
			where, flagServer, detail)
	case errors.Is(err, client.ErrUnauthenticated):
		return inputErrorf("the server at %s refused the credentials: check --%s and --%s (TEMPEL_USER, TEMPEL_KEY) [%s]",
			where, flagUser, flagKey, detail)
	case errors.Is(err, client.ErrOverloaded):
		return inputErrorf("the server at %s is overloaded: try again later [%s]", where, detail)
	case errors.Is(err, context.DeadlineExceeded):
		return inputErrorf("the server at %s did not answer within --%s %s [%s]", where, flagTimeout, s.timeout, detail)
	}
	return inputErrorf("%s", detail)
}

const signDescription = `Signs each FILE and writes its signature next to it as FILE.ksig (the
name tempel verify and ksi-tool look for). Existing signatures are never
overwritten without --force.

Several files are signed with ONE request: they are hashed (SHA-256) and
aggregated locally into a small hash tree whose root the server signs, so
every signature carries the same signing time.

   tempel sign report.pdf minutes.txt      writes report.pdf.ksig, minutes.txt.ksig
   tempel sign -o out.ksig report.pdf      one file, signature to out.ksig
   tempel sign -o doc.ksig - < doc.txt     standard input
   tempel sign --hash SHA-256:HEX -o x.ksig   a hash computed elsewhere

The server is --server (default ` + defaultServer + `, or TEMPEL_SERVER); a
development server ('tempel serve') needs no credentials. For each file
the signing time (UTC), the identity recorded by the servers and the
signature's path are printed; --json prints one JSON object per file
(JSON Lines) with the fields document, document_hash, signature,
signing_time, signing_time_unix and identity.

` + exitCodesHelp

func signCommand() *ucli.Command {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: flagOutput, Aliases: []string{"o"}, Usage: "write the signature to `PATH` (one input only; required for - and --hash)"},
		&ucli.StringFlag{Name: flagHash, Usage: "sign the document hash `ALG:HEX` instead of a file (SHA-256 only); needs -o"},
		&ucli.BoolFlag{Name: flagForce, Aliases: []string{"f"}, Usage: "overwrite existing signature files"},
		&ucli.BoolFlag{Name: flagJSON, Usage: "print one JSON object per signed document (JSON Lines)"},
	}
	return &ucli.Command{
		Name:        "sign",
		Usage:       "sign files (or a hash) with a Tempel server",
		ArgsUsage:   "FILE...",
		UsageText:   "tempel sign [flags] FILE...\ntempel sign [flags] -o PATH -\ntempel sign [flags] --hash ALG:HEX -o PATH",
		Description: signDescription,
		Flags:       append(flags, serverFlags(true)...),
		Action:      runSign,
	}
}

// signJob is one document to sign and where its signature goes.
type signJob struct {
	doc  string      // file name, "-" for standard input, "" for --hash
	hash ksi.Imprint // known up front for --hash, else computed
	out  string
}

// signView is what sign prints about one signature.
type signView struct {
	Document        string `json:"document,omitempty"`
	DocumentHash    string `json:"document_hash"`
	Signature       string `json:"signature"`
	SigningTime     string `json:"signing_time"`
	SigningTimeUnix uint64 `json:"signing_time_unix"`
	Identity        string `json:"identity,omitempty"`
}

func planSign(c *ucli.Context) ([]signJob, error) {
	args, out, force := c.Args().Slice(), c.String(flagOutput), c.Bool(flagForce)
	if h := c.String(flagHash); h != "" {
		if len(args) > 0 {
			return nil, usageErrorf("--%s replaces the FILE: give one or the other", flagHash)
		}
		if out == "" {
			return nil, usageErrorf("--%s needs -o PATH: there is no file to put the signature next to", flagHash)
		}
		imp, err := ksi.ParseImprintText(h)
		if err != nil {
			return nil, usageErrorf("--%s %q: %s (want ALG:HEX, e.g. SHA-256:11a7…)", flagHash, h, trimPkg(err))
		}
		if imp.Alg() != ksi.SHA2_256 {
			return nil, usageErrorf("--%s: the server signs SHA-256 hashes only, got %s", flagHash, imp.Alg())
		}
		return []signJob{{hash: imp, out: out}}, checkOutputs([]string{out}, force)
	}
	switch {
	case len(args) == 0:
		return nil, usageErrorf("nothing to sign: give a FILE, - for standard input, or --%s (see 'tempel sign --help')", flagHash)
	case out != "" && len(args) > 1:
		return nil, usageErrorf("-o names the signature of one input, got %d files (without -o each FILE is signed into FILE%s)", len(args), sigSuffix)
	}
	jobs := make([]signJob, len(args))
	outs := make([]string, len(args))
	for i, a := range args {
		switch {
		case a == "-" && out == "":
			return nil, usageErrorf("standard input (-) has no name to put the signature next to: add -o PATH")
		case a == "-" && len(args) > 1:
			return nil, usageErrorf("standard input (-) can only be signed alone")
		case out != "":
			jobs[i] = signJob{doc: a, out: out}
		default:
			jobs[i] = signJob{doc: a, out: a + sigSuffix}
		}
		outs[i] = jobs[i].out
	}
	return jobs, checkOutputs(outs, force)
}

// checkOutputs refuses, before anything is hashed or sent, output paths
// that already exist (unless force) or that two inputs share: a signing
// request should not be wasted on a run that cannot write its results.
func checkOutputs(paths []string, force bool) error {
	seen := make(map[string]bool, len(paths))
	for _, p := range paths {
		clean := filepath.Clean(p)
		if seen[clean] {
			return usageErrorf("two inputs would both write %s", p)
		}
		seen[clean] = true
		if force {
			continue
		}
		if _, err := os.Lstat(p); err == nil {
			return usageErrorf("%s already exists: remove it or add --%s", p, flagForce)
		}
	}
	return nil
}

func runSign(c *ucli.Context) error {
	jobs, err := planSign(c)
	if err != nil {
		return err
	}
	srv, err := serverOptionsFrom(c)
	if err != nil {
		return err
	}
	if err := hashJobs(c, jobs); err != nil {
		return err
	}
	cl, err := srv.dial()
	if err != nil {
		return err
	}
	defer cl.Close()

	hashes := make([]ksi.Imprint, len(jobs))
	for i, j := range jobs {
		hashes[i] = j.hash
	}
	// One request for all files: SignMany aggregates them locally (and
	// sends a single hash unchanged).
	sigs, err := cl.SignMany(c.Context, hashes)
	if err != nil {
		return srv.serverError(err)
	}

	out := c.App.Writer
	enc := json.NewEncoder(out)
	enc.SetEscapeHTML(false)
	force := c.Bool(flagForce)
	for i, j := range jobs {
		b, err := sigs[i].Encode()
		if err != nil {
			return inputErrorf("cannot encode the signature of %s: %s", j.display(), trimPkg(err))
		}
		if err := writeNew(j.out, b, force); err != nil {
			return inputErrorf("cannot write signature: %v", err)
		}
		v := signView{
			Document:        j.doc,
			DocumentHash:    j.hash.String(),
			Signature:       j.out,
			SigningTime:     formatTime(sigs[i].SigningTime()),
			SigningTimeUnix: sigs[i].SigningTime(),
			Identity:        strings.Join(sigs[i].Identity(), " :: "),
		}
		if c.Bool(flagJSON) {
			if err := enc.Encode(v); err != nil {
				return err
			}
			continue
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		fmt.Fprintf(out, "signed %s\n", j.display())
		line := func(label, value string) { fmt.Fprintf(out, "  %-16s %s\n", label+":", value) }
		line("document hash", v.DocumentHash)
		line("signed at", v.SigningTime)
		if v.Identity != "" {
			line("signed by", v.Identity)
		}
		line("signature", v.Signature)
	}
	return nil
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

// Above these sizes hashing takes long enough that a silent terminal
// looks hung, so a progress line is shown.
const (
	progressMinFiles = 20
	progressMinBytes = 64 << 20
)

// hashJobs fills in the SHA-256 hash of every file job, streaming: files
// may be large. SHA-256 is the only algorithm the server accepts.
func hashJobs(c *ucli.Context, jobs []signJob) error {
	var files []*signJob
	var total int64
	for i := range jobs {
		j := &jobs[i]
		if j.hash != nil {
			continue
		}
		if j.doc != "-" {
			fi, err := os.Stat(j.doc)
			if err != nil {
				return inputErrorf("cannot read document: %v", err)
			}
			if fi.IsDir() {
				return inputErrorf("%s is a directory; sign the files in it (e.g. tempel sign %s)", j.doc, filepath.Join(j.doc, "*"))
			}
			total += fi.Size()
		}
		files = append(files, j)
	}
	var bar *progress
	if (len(files) > progressMinFiles || total > progressMinBytes) && isTerminal(c.App.ErrWriter) {
		bar = newProgress(c.App.ErrWriter, len(files), total)
		defer bar.finish()
	}
	for _, j := range files {
		h, err := hashFile(j.doc, bar)
		if err != nil {
			return err
		}
		j.hash = h
		bar.fileDone()
	}
	return nil
}

func hashFile(name string, bar *progress) (ksi.Imprint, error) {
	var r io.Reader = os.Stdin
	if name != "-" {
		f, err := os.Open(name)
		if err != nil {
			return nil, inputErrorf("cannot read document: %v", err)
		}
		defer f.Close()
		r = f
	}
	h, err := ksi.SHA2_256.New()
	if err != nil {
		return nil, err
	}
	if bar != nil {
		r = io.TeeReader(r, bar)
	}
	if _, err := io.Copy(h, r); err != nil {
		return nil, inputErrorf("cannot read %s: %v", name, err)
	}
	return ksi.NewImprint(ksi.SHA2_256, h.Sum(nil))
}

// isTerminal reports whether w is a terminal. A progress line in a log
// file or a pipe is noise, so it is only drawn for people.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progress draws one self-overwriting line on a terminal: files and bytes
// hashed so far. (A library bar would need a new module dependency for
// what is one line of output.)
type progress struct {
	w            io.Writer
	files, total int64
	doneFiles    int64
	doneBytes    int64
	drawn        time.Time
}

func newProgress(w io.Writer, files int, total int64) *progress {
	p := &progress{w: w, files: int64(files), total: total}
	p.draw()
	return p
}

// Write counts hashed bytes (progress is the TeeReader's sink).
func (p *progress) Write(b []byte) (int, error) {
	p.doneBytes += int64(len(b))
	// Redrawing on every 32 KiB block would flood a slow terminal.
	if time.Since(p.drawn) > 100*time.Millisecond {
		p.draw()
	}
	return len(b), nil
}

func (p *progress) fileDone() {
	if p == nil {
		return
	}
	p.doneFiles++
	p.draw()
}

func (p *progress) draw() {
	p.drawn = time.Now()
	pct := 100.0
	if p.total > 0 {
		pct = 100 * float64(p.doneBytes) / float64(p.total)
	}
	const width = 30
	n := int(pct * width / 100)
	fmt.Fprintf(p.w, "\rhashing [%s%s] %3.0f%%  %d/%d files  %s/%s ",
		strings.Repeat("=", n), strings.Repeat(" ", width-n), pct, p.doneFiles, p.files, mib(p.doneBytes), mib(p.total))
}

func (p *progress) finish() {
	// Erase the line so the results start on a clean one.
	fmt.Fprintf(p.w, "\r\033[K")
}

func mib(n int64) string { return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20)) }

// writeNew writes a signature file. Without force it never replaces an
// existing file, even one created since the inputs were checked (O_EXCL).
// With force it replaces the file atomically, so a crash never leaves a
// half-written signature in place of a good one.
func writeNew(path string, b []byte, force bool) error {
	if force {
		return writeAtomic(path, b)
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return fmt.Errorf("%s already exists: remove it or add --%s", path, flagForce)
		}
		return err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
	}
	return err
}

// writeAtomic replaces path with b through a temporary file in the same
// directory and a rename.
func writeAtomic(path string, b []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename there is nothing left to remove
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
