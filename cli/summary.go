package cli

import (
	"fmt"
	"io"
	"strings"
	"time"
)

// summary counts the outcomes of a bulk command for its last line, e.g.
// "verified 10000 files in 1.52s (6579 files/s): 9998 OK, 2 FAILED".
type summary struct {
	verb     string // what was done, "signed", "verified", "extended"
	start    time.Time
	outcomes []string // in the order printed
	counts   map[string]int
	total    int
	failed   []string // files whose outcome is not a success, in input order
	failVerb string   // how the final line says they failed: "failed" by default
}

// newSummary starts the clock. outcomes lists every outcome the command
// can have, in the order the line names them; the first is the success.
func newSummary(verb string, outcomes ...string) *summary {
	return &summary{verb: verb, start: time.Now(), outcomes: outcomes, counts: make(map[string]int)}
}

// add records the outcome of one file; failed marks it for the list of
// failed files.
func (s *summary) add(path, outcome string, failed bool) {
	s.total++
	s.counts[outcome]++
	if failed {
		s.failed = append(s.failed, path)
	}
}

// line is the summary. Outcomes that did not occur are left out, except
// the success, so that "0 OK" is said.
func (s *summary) line() string {
	elapsed := time.Since(s.start)
	var parts []string
	for i, o := range s.outcomes {
		if n := s.counts[o]; n > 0 || i == 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, o))
		}
	}
	rate := float64(s.total) / elapsed.Seconds()
	return fmt.Sprintf("%s %d %s in %.2fs (%.0f files/s): %s",
		s.verb, s.total, plural(s.total, "file", "files"), elapsed.Seconds(), rate, strings.Join(parts, ", "))
}

// print writes the summary line to w.
func (s *summary) print(w io.Writer) { fmt.Fprintln(w, s.line()) }

// maxNamedFailures bounds the failed files named in the final error line;
// each was already named on its own line as it failed.
const maxNamedFailures = 10

// failures returns the error that ends a run in which some files failed,
// naming them, with the given exit code; nil when none failed.
func (s *summary) failures(code int) error {
	if len(s.failed) == 0 {
		return nil
	}
	names := s.failed
	more := ""
	if len(names) > maxNamedFailures {
		more = fmt.Sprintf(" and %d more", len(names)-maxNamedFailures)
		names = names[:maxNamedFailures]
	}
	verb := s.failVerb
	if verb == "" {
		verb = "failed"
	}
	return &exitError{code: code, err: fmt.Errorf("%d of %d %s %s: %s%s",
		len(s.failed), s.total, plural(s.total, "file", "files"), verb, strings.Join(names, ", "), more)}
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
