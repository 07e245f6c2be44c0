package schedule

import (
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

var rewrite = flag.Bool("rewrite", false, "rewrite the expected outcomes in testdata/*.txt")

// step is one command of a scenario file and the outcome it expects.
//
// A scenario file is a list of steps separated by blank lines: a command
// line (words, key=value arguments), a line "----", and the expected
// output up to the next blank line. Lines starting with # before a
// command are comments.
type step struct {
	comments []string
	cmd      string
	want     string
	line     int
}

func parseSteps(t *testing.T, path string) []step {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var steps []step
	var cur *step
	inWant := false
	for i, l := range strings.Split(string(b), "\n") {
		switch {
		case cur == nil && strings.TrimSpace(l) == "":
		case cur == nil && strings.HasPrefix(l, "#"):
			steps = append(steps, step{comments: []string{l}, line: i + 1})
			cur = &steps[len(steps)-1]
		case cur == nil:
			steps = append(steps, step{cmd: l, line: i + 1})
			cur = &steps[len(steps)-1]
		case !inWant && strings.HasPrefix(l, "#") && cur.cmd == "":
			cur.comments = append(cur.comments, l)
		case !inWant && cur.cmd == "":
			cur.cmd, cur.line = l, i+1
		case !inWant && l == "----":
			inWant = true
		case !inWant:
			t.Fatalf("%s:%d: want ---- after the command, got %q", path, i+1, l)
		case strings.TrimSpace(l) == "":
			cur, inWant = nil, false
		default:
			cur.want += l + "\n"
		}
	}
	return steps
}

func writeSteps(path string, steps []step) error {
	var b strings.Builder
	for i, s := range steps {
		if i > 0 {
			b.WriteString("\n")
		}
		for _, c := range s.comments {
			b.WriteString(c + "\n")
		}
		b.WriteString(s.cmd + "\n----\n" + s.want)
	}
	return os.WriteFile(path, []byte(b.String()), 0o644)
}

// TestScenarios runs every testdata/*.txt scenario against a State.
func TestScenarios(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	if len(files) == 0 {
		t.Fatal("no scenarios")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			steps := parseSteps(t, f)
			var h harness
			for i := range steps {
				got := h.do(t, f, steps[i])
				if *rewrite {
					steps[i].want = got
				} else if got != steps[i].want {
					t.Errorf("%s:%d: %s\ngot:\n%swant:\n%s", f, steps[i].line, steps[i].cmd, got, steps[i].want)
				}
			}
			if *rewrite {
				if err := writeSteps(f, steps); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// The commands: new (grace=, maxhold=, early, or defaults=local|remote;
// last= or at=), submit at= [slot=], reserve at=, release slot=, tick at=
// (close what is due), state, behind at=, rounds period= start= fired=.

// harness is a calendar as far as the schedule sees it: the state, and
// the seconds with submissions waiting.
type harness struct {
	s    *State
	busy map[uint64]int
}

// at parses a time written as Unix seconds with milliseconds: 100.020.
func at(t *testing.T, v string) time.Time {
	t.Helper()
	sec, ms, _ := strings.Cut(v, ".")
	s, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		t.Fatalf("time %q: %v", v, err)
	}
	var m int64
	if ms != "" {
		if m, err = strconv.ParseInt((ms + "00")[:3], 10, 64); err != nil {
			t.Fatalf("time %q: %v", v, err)
		}
	}
	return time.Unix(s, m*int64(time.Millisecond))
}

func show(tm time.Time) string {
	return fmt.Sprintf("%d.%03d", tm.Unix(), tm.Nanosecond()/int(time.Millisecond))
}

func (h *harness) do(t *testing.T, file string, s step) string {
	t.Helper()
	f := strings.Fields(s.cmd)
	if len(f) == 0 {
		t.Fatalf("%s:%d: no command", file, s.line)
	}
	args := map[string]string{}
	for _, a := range f[1:] {
		k, v, _ := strings.Cut(a, "=")
		args[k] = v
	}
	dur := func(k string) time.Duration {
		d, err := time.ParseDuration(args[k])
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", file, s.line, k, err)
		}
		return d
	}
	num := func(k string) uint64 {
		n, err := strconv.ParseUint(args[k], 10, 64)
		if err != nil {
			t.Fatalf("%s:%d: %s: %v", file, s.line, k, err)
		}
		return n
	}
	now := func() time.Time { return at(t, args["at"]) }
	if f[0] != "new" && h.s == nil {
		t.Fatalf("%s:%d: %s before new", file, s.line, f[0])
	}
	var out strings.Builder
	switch f[0] {
	case "new":
		var r Rules
		if d, ok := args["defaults"]; ok {
			r = Defaults(d == "local")
			fmt.Fprintf(&out, "grace %v maxhold %v early %v\n", r.Grace, r.MaxHold, r.CloseEarly)
		} else {
			r = Rules{Grace: dur("grace"), MaxHold: dur("maxhold")}
			_, r.CloseEarly = args["early"]
		}
		last := uint64(0)
		if _, ok := args["last"]; ok {
			last = num("last")
		} else {
			last = r.Start(now())
		}
		h.s, h.busy = New(r, last), map[uint64]int{}
		fmt.Fprintf(&out, "last closed %d\n", h.s.Last())
	case "submit":
		sec := h.s.Open(now())
		if _, ok := args["slot"]; ok {
			sec = h.s.SlotSecond(num("slot"), now())
			h.s.Release(num("slot"), false)
		}
		h.busy[sec]++
		fmt.Fprintf(&out, "in second %d\n", sec)
	case "reserve":
		fmt.Fprintf(&out, "slot in second %d\n", h.s.Reserve(now()))
	case "release":
		if h.s.Release(num("slot"), true) {
			fmt.Fprintf(&out, "no holds left in %d\n", num("slot"))
		} else {
			fmt.Fprintf(&out, "still held: %d\n", num("slot"))
		}
	case "tick":
		// The second loop's look at now: close every due second.
		for {
			t1, ok := h.s.Next(now(), maps.Keys(h.busy))
			if !ok {
				break
			}
			from := h.s.Last() + 1
			h.s.Take(t1)
			n := h.busy[t1]
			delete(h.busy, t1)
			h.s.Closed(t1)
			if from < t1 {
				fmt.Fprintf(&out, "close %d (empty %d..%d), %d submissions\n", t1, from, t1-1, n)
			} else {
				fmt.Fprintf(&out, "close %d, %d submissions\n", t1, n)
			}
		}
		fmt.Fprintf(&out, "next close at %s (wait %v)\n", show(h.s.CloseAt()), h.s.Wait(now()))
	case "state":
		held := slices.Sorted(maps.Keys(h.s.holds))
		fmt.Fprintf(&out, "last %d taken %d holds %v busy %v\n", h.s.Last(), h.s.taken, held, slices.Sorted(maps.Keys(h.busy)))
	case "behind":
		fmt.Fprintf(&out, "%v\n", h.s.Behind(now()))
	case "rounds":
		// Round closings of period p from start, the clock reading each
		// time the timer fires (fired=a,b,...).
		p := dur("period")
		next := FirstRound(at(t, args["start"]), p)
		fmt.Fprintf(&out, "first %s\n", show(next))
		for _, v := range strings.Split(args["fired"], ",") {
			next = NextRound(at(t, v), next, p)
			fmt.Fprintf(&out, "fired %s: next %s\n", v, show(next))
		}
	default:
		t.Fatalf("%s:%d: unknown command %q", file, s.line, f[0])
	}
	return out.String()
}

// -rewrite writes a file as it was when every outcome matches: the
// parser keeps comments, commands and outcomes.
func TestScenarioFilesRoundTrip(t *testing.T) {
	files, _ := filepath.Glob("testdata/*.txt")
	for _, f := range files {
		want, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(t.TempDir(), "out.txt")
		if err := writeSteps(out, parseSteps(t, f)); err != nil {
			t.Fatal(err)
		}
		if got, _ := os.ReadFile(out); string(got) != string(want) {
			t.Errorf("%s: rewritten differs:\n%s", f, got)
		}
	}
}
