package cli

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// inputResult is the outcome of one input of sign, extend or verify, as
// the report loop they share prints it. The value itself is what --json
// encodes.
type inputResult interface {
	// name is the input as the summary and the error lines name it.
	name() string
	// outcome is the summary's word for it ("signed", "OK", …).
	outcome() string
	// exitCode is the exit code this input alone would give.
	exitCode() int
	// errorLine is what goes to standard error after the command's name,
	// "" for nothing; bulk tells whether several inputs share the output.
	errorLine(bulk bool) string
	// line is the line -v prints for it among several inputs, "" for none.
	line() string
	// writeText writes the report of a single input; it writes nothing
	// when the failure was already told on standard error.
	writeText(w io.Writer, verbose bool)
}

// eachInput runs f for each of n inputs on workers goroutines, with a
// progress bar labelled what ("verifying"). It returns the context's
// error when the run was interrupted (some inputs were then not run).
func eachInput(c *ucli.Context, what string, n, workers int, f func(i int)) error {
	b := newFilesBar(c, what, n)
	parallel(c.Context, n, workers, func(i int) {
		f(i)
		b.add(1)
	})
	b.done()
	return c.Context.Err()
}

// reportInputs prints the outcome of every input: the report of a single
// one; for several, a line each with -v and the summary; with --json one
// object per input (the summary then goes to standard error). Failures
// are named on standard error. The error returned carries the exit code
// of the worst outcome and, for several inputs, names the failed ones.
func reportInputs[R inputResult](c *ucli.Context, bulk bool, sum *summary, results []R) error {
	p := resultPrinter{
		out: c.App.Writer, errw: c.App.ErrWriter, cmd: commandName(c),
		bulk: bulk, json: c.Bool(flagJSON), verbose: c.Bool(flagVerbose),
	}
	p.enc = json.NewEncoder(p.out)
	p.enc.SetEscapeHTML(false)
	worst := ExitOK
	for _, r := range results {
		code := r.exitCode()
		worst = worse(worst, code)
		sum.add(r.name(), r.outcome(), code != ExitOK)
		if err := p.print(r); err != nil {
			return err
		}
	}
	if !bulk {
		return silentExit(worst)
	}
	if p.json {
		sum.print(p.errw)
	} else {
		sum.print(p.out)
	}
	return sum.failures(worst)
}

// resultPrinter prints the results of one run as its flags ask.
type resultPrinter struct {
	out, errw           io.Writer
	enc                 *json.Encoder
	cmd                 string
	bulk, json, verbose bool
	printed             bool // a single-input report was written; the next one needs a blank line
}

func (p *resultPrinter) print(r inputResult) error {
	if s := r.errorLine(p.bulk); s != "" {
		fmt.Fprintf(p.errw, "%s: %s\n", p.cmd, s)
	}
	switch {
	case p.json:
		return p.enc.Encode(r)
	case p.bulk && p.verbose:
		if s := r.line(); s != "" {
			fmt.Fprintln(p.out, s)
		}
	case p.bulk:
	default:
		var b strings.Builder
		r.writeText(&b, p.verbose)
		if b.Len() == 0 {
			return nil
		}
		if p.printed {
			fmt.Fprintln(p.out)
		}
		_, err := io.WriteString(p.out, b.String())
		p.printed = true
		return err
	}
	return nil
}
