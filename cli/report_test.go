package cli

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	ucli "github.com/urfave/cli/v2"
)

// testResult is an input result as the report loop sees it: sign,
// extend and verify each give theirs; this one shows what the loop does
// with any.
type testResult struct {
	Name    string `json:"name"`
	Outcome string `json:"outcome"`
	code    int
}

func (r testResult) name() string    { return r.Name }
func (r testResult) outcome() string { return r.Outcome }
func (r testResult) exitCode() int   { return r.code }

func (r testResult) errorLine(bulk bool) string {
	switch {
	case r.code == ExitOK:
		return ""
	case bulk:
		return r.Name + ": " + r.Outcome
	}
	return r.Outcome
}

func (r testResult) line() string { return r.Name + " is " + r.Outcome }

func (r testResult) writeText(w io.Writer, verbose bool) {
	if r.code == ExitError {
		return
	}
	fmt.Fprintf(w, "report of %s (verbose %v)\n", r.Name, verbose)
}

// runReport runs reportInputs in a real urfave command with the sign,
// extend and verify output flags, and returns what it printed.
func runReport(t *testing.T, bulk bool, results []testResult, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errw bytes.Buffer
	app := &ucli.App{
		Name: "tempel", Writer: &out, ErrWriter: &errw,
		Commands: []*ucli.Command{{
			Name:  "check",
			Flags: []ucli.Flag{&ucli.BoolFlag{Name: flagJSON}, &ucli.BoolFlag{Name: flagVerbose, Aliases: []string{"v"}}},
			Action: func(c *ucli.Context) error {
				sum := newSummary("checked", "good", "bad", "broken")
				return reportInputs(c, bulk, sum, results)
			},
		}},
	}
	err := app.Run(append([]string{"tempel", "check"}, args...))
	var ee *exitError
	switch {
	case err == nil:
		code = ExitOK
	case errors.As(err, &ee):
		code = ee.code
		if ee.err != nil {
			fmt.Fprintf(&errw, "final: %v\n", ee.err)
		}
	default:
		t.Fatalf("reportInputs: %v", err)
	}
	return out.String(), errw.String(), code
}

// dropTiming removes the elapsed time and rate of a summary line, the only
// parts that vary between runs.
func dropTiming(s string) string {
	lines := strings.Split(s, "\n")
	for i, l := range lines {
		if before, after, ok := strings.Cut(l, " in "); ok && strings.HasPrefix(l, "checked ") {
			_, rest, _ := strings.Cut(after, "): ")
			lines[i] = before + ": " + rest
		}
	}
	return strings.Join(lines, "\n")
}

func TestReportInputs(t *testing.T) {
	good := testResult{Name: "a", Outcome: "good", code: ExitOK}
	bad := testResult{Name: "b", Outcome: "bad", code: ExitFailed}
	broken := testResult{Name: "c", Outcome: "broken", code: ExitError}
	tests := []struct {
		name           string
		bulk           bool
		results        []testResult
		args           []string
		stdout, stderr string
		code           int
	}{{
		name: "single report", results: []testResult{good},
		stdout: "report of a (verbose false)\n",
	}, {
		name: "single verbose", results: []testResult{good}, args: []string{"-v"},
		stdout: "report of a (verbose true)\n",
	}, {
		name: "single failure is in its report and its code", results: []testResult{bad},
		stdout: "report of b (verbose false)\n", stderr: "tempel check: bad\n", code: ExitFailed,
	}, {
		name: "single error only on standard error", results: []testResult{broken},
		stderr: "tempel check: broken\n", code: ExitError,
	}, {
		name: "several single reports are separated", results: []testResult{good, good},
		stdout: "report of a (verbose false)\n\nreport of a (verbose false)\n",
	}, {
		name: "bulk prints the summary and names the failures", bulk: true, results: []testResult{good, bad, broken},
		stdout: "checked 3 files: 1 good, 1 bad, 1 broken\n",
		stderr: "tempel check: b: bad\ntempel check: c: broken\nfinal: 2 of 3 files failed: b, c\n",
		code:   ExitFailed, // a failed input is worse news than an error
	}, {
		name: "bulk verbose adds a line each", bulk: true, results: []testResult{good, good}, args: []string{"-v"},
		stdout: "a is good\na is good\nchecked 2 files: 2 good\n",
	}, {
		name: "bulk with no success still says 0", bulk: true, results: []testResult{broken},
		stdout: "checked 1 file: 0 good, 1 broken\n",
		stderr: "tempel check: c: broken\nfinal: 1 of 1 file failed: c\n", code: ExitError,
	}, {
		name: "json puts the summary on standard error", bulk: true, results: []testResult{good, bad}, args: []string{"--json"},
		stdout: `{"name":"a","outcome":"good"}` + "\n" + `{"name":"b","outcome":"bad"}` + "\n",
		stderr: "tempel check: b: bad\nchecked 2 files: 1 good, 1 bad\nfinal: 1 of 2 files failed: b\n", code: ExitFailed,
	}, {
		name: "json single", results: []testResult{broken}, args: []string{"--json"},
		stdout: `{"name":"c","outcome":"broken"}` + "\n", stderr: "tempel check: broken\n", code: ExitError,
	}}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, code := runReport(t, tc.bulk, tc.results, tc.args...)
			if d := cmp.Diff(tc.stdout, dropTiming(stdout)); d != "" {
				t.Errorf("stdout (-want +got):\n%s", d)
			}
			if d := cmp.Diff(tc.stderr, dropTiming(stderr)); d != "" {
				t.Errorf("stderr (-want +got):\n%s", d)
			}
			if code != tc.code {
				t.Errorf("exit code %d, want %d", code, tc.code)
			}
		})
	}
}
