package cli

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/verifier"
)

func TestOutputUnder(t *testing.T) {
	tests := []struct{ in, want, wantErr string }{
		{in: "a.txt", want: "out/a.txt"},
		{in: "docs/sub/b.txt", want: "out/docs/sub/b.txt"},
		{in: "./docs//c.txt", want: "out/docs/c.txt"},
		{in: "/abs/d.txt", want: "out/abs/d.txt"},
		{in: "docs/../e.txt", want: "out/e.txt"},
		{in: "../f.txt", wantErr: "outside the current directory"},
		{in: "..", wantErr: "outside the current directory"},
	}
	for _, tt := range tests {
		got, err := outputUnder("out", tt.in)
		switch {
		case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
			t.Errorf("outputUnder(%q) error %v, want %q", tt.in, err, tt.wantErr)
		case tt.wantErr == "" && (err != nil || got != filepath.FromSlash(tt.want)):
			t.Errorf("outputUnder(%q) = %q, %v, want %q", tt.in, got, err, tt.want)
		}
	}
}

func TestWalkFilters(t *testing.T) {
	for name, want := range map[string]bool{"a.txt": true, "a.txt.ksig": false, ".a.txt.ksig.123.tmp": false, "x.tmp": true} {
		if got := documentFiles(name); got != want {
			t.Errorf("documentFiles(%q) = %v, want %v", name, got, want)
		}
	}
	for name, want := range map[string]bool{"a.txt": false, "a.txt.ksig": true, "a.txt.ksig.ext.ksig": false} {
		if got := signatureFiles(name); got != want {
			t.Errorf("signatureFiles(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestParallelRunsEachIndexOnce(t *testing.T) {
	const n = 1000
	var seen [n]atomic.Int32
	var running, peak atomic.Int32
	parallel(t.Context(), n, 3, func(i int) {
		if r := running.Add(1); r > peak.Load() {
			peak.Store(r)
		}
		seen[i].Add(1)
		running.Add(-1)
	})
	for i := range seen {
		if c := seen[i].Load(); c != 1 {
			t.Fatalf("index %d ran %d times", i, c)
		}
	}
	if p := peak.Load(); p > 3 {
		t.Errorf("%d workers ran at once, want at most 3", p)
	}
}

func TestSummary(t *testing.T) {
	s := newSummary("verified", "OK", "FAILED", "ERROR")
	s.failVerb = "did not verify"
	for i := range 14 {
		outcome, failed := "OK", false
		if i%2 == 1 {
			outcome, failed = "FAILED", true
		}
		s.add(filepath.Join("d", string(rune('a'+i))), outcome, failed)
	}
	line := s.line()
	if !strings.HasPrefix(line, "verified 14 files in ") || !strings.HasSuffix(line, "files/s): 7 OK, 7 FAILED") {
		t.Errorf("line = %q", line)
	}
	err := s.failures(ExitFailed)
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != ExitFailed {
		t.Fatalf("failures = %v, want exit code %d", err, ExitFailed)
	}
	if want := "7 of 14 files did not verify: d/b, d/d, d/f, d/h, d/j, d/l, d/n"; err.Error() != want {
		t.Errorf("failures = %q, want %q", err, want)
	}
	if newSummary("signed", "signed").failures(ExitError) != nil {
		t.Error("failures without failed files is not nil")
	}
}

func TestSignAlg(t *testing.T) {
	now := time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC)
	for _, ok := range []string{"SHA-256", "SHA-384", "SHA-512", "SHA3-224", "SHA3-256", "SHA3-384", "SHA3-512", "RIPEMD-160"} {
		if _, err := signAlg(ok, now); err != nil {
			t.Errorf("signAlg(%s): %v", ok, err)
		}
	}
	tests := map[string]string{
		"SHA-1": "SHA-1 is deprecated since 2016-07-01T00:00:00Z",
		"SM3":   "SM3 is not supported by tempel",
		"MD5":   "MD5: ",
	}
	for name, want := range tests {
		if _, err := signAlg(name, now); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("signAlg(%s) = %v, want %q", name, err, want)
		}
	}
	// Before its deprecation SHA-1 was fine: the date decides.
	if _, err := signAlg("SHA-1", time.Date(2015, 1, 1, 0, 0, 0, 0, time.UTC)); err != nil {
		t.Errorf("signAlg(SHA-1) in 2015: %v", err)
	}
}

func TestReadConfig(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	p := write("good", "# comment\n\n  pubfile = pub.bin\ntrust-root=/etc/root.pem\ntrust-root = r2.pem\ncnstr = O=Acme, Inc.\n"+
		"tls-ca = \"ca.pem\"\nserver = https://a:1\nkey = k = with equals\n")
	cf, err := readConfig(p)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range cf.settings {
		got = append(got, s.name+"="+s.value)
	}
	want := []string{
		"pubfile=" + filepath.Join(dir, "pub.bin"),
		"trust-root=/etc/root.pem",
		"trust-root=" + filepath.Join(dir, "r2.pem"),
		"cnstr=O=Acme, Inc.",
		"tls-ca=" + filepath.Join(dir, "ca.pem"),
		"server=https://a:1",
		"key=k = with equals",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("settings:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if !cf.hasKey {
		t.Error("hasKey = false")
	}
	if cf, err := readConfig(write("url", "pubfile = https://x/publications.bin\n")); err != nil || cf.settings[0].value != "https://x/publications.bin" {
		t.Errorf("a URL is not a path: %+v, %v", cf, err)
	}

	bad := map[string]string{
		"pubfile = a\nfoo = b\n":               `:2: unknown setting "foo"`,
		"pubfile\n":                            `:1: want NAME = VALUE`,
		"pubfile =\n":                          `:1: want NAME = VALUE`,
		"pubfile = a\npubfile = b\n":           `:2: pubfile is already set on line 1`,
		"pubfile-no-verify = true\n":           `:1: pubfile-no-verify cannot be set in a config file`,
		"--pubfile https://x/publications.bin": `:1: want NAME = VALUE`,
	}
	for text, want := range bad {
		if _, err := readConfig(write("bad", text)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("readConfig(%q) = %v, want %q", text, err, want)
		}
	}
	if _, err := readConfig(filepath.Join(dir, "missing")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing file: %v", err)
	}
}

func TestDefaultConfigPath(t *testing.T) {
	t.Setenv("HOME", "/home/citizen")
	t.Setenv("XDG_CONFIG_HOME", "")
	if got := defaultConfigPath(); got != "/home/citizen/.config/tempel/config" {
		t.Errorf("HOME: %q", got)
	}
	t.Setenv("XDG_CONFIG_HOME", "/xdg")
	if got := defaultConfigPath(); got != "/xdg/tempel/config" {
		t.Errorf("XDG_CONFIG_HOME: %q", got)
	}
	// A relative XDG_CONFIG_HOME is invalid by the XDG spec and ignored.
	t.Setenv("XDG_CONFIG_HOME", "relative")
	if got := defaultConfigPath(); got != "/home/citizen/.config/tempel/config" {
		t.Errorf("relative XDG_CONFIG_HOME: %q", got)
	}
}

func TestProgressBarDrawsAndClears(t *testing.T) {
	var buf bytes.Buffer
	b := newBar(&buf, "verifying", 100, false)
	for range 100 {
		b.add(1)
	}
	b.done()
	out := buf.String()
	// Redrawing is throttled, so only the first state is sure to show.
	if !strings.Contains(out, "verifying") || !strings.Contains(out, "/100, ") {
		t.Errorf("bar output %q lacks the label or the count", out)
	}
	// done clears the line for the summary that follows.
	if !strings.HasSuffix(strings.TrimRight(out, "\r"), strings.Repeat(" ", 20)) {
		t.Errorf("bar output %q does not end with a cleared line", out)
	}
	// A nil bar (not a terminal) does nothing and does not panic.
	var none *bar
	none.add(1)
	none.done()
	if n, err := none.Write([]byte("abc")); n != 3 || err != nil {
		t.Errorf("nil bar Write = %d, %v", n, err)
	}
}

func TestVerdictLineSaysWhatIsMissing(t *testing.T) {
	v := verifyView{result: verifier.NA, Code: verifier.GEN02, Message: "Verification inconclusive: no publications file", missing: missingPubfile}
	want := "INCONCLUSIVE: no publications file given: pass --pubfile or set it in the config (GEN-02)"
	if got := v.verdictLine(); got != want {
		t.Errorf("verdictLine = %q, want %q", got, want)
	}
}

func TestPairDocument(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	for _, f := range []string{"a.txt", "a.txt.ksig", "b.txt", "b.txt.ksig", "b.txt.ksig.ext.ksig", "lonely.ksig"} {
		if err := os.WriteFile(f, nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct{ arg, doc, sig, err string }{
		{"a.txt", "a.txt", "a.txt.ksig", ""},
		{"a.txt.ksig", "a.txt", "a.txt.ksig", ""},
		{"b.txt", "b.txt", "b.txt.ksig.ext.ksig", ""},
		{"b.txt.ksig", "b.txt", "b.txt.ksig", ""},
		{"b.txt.ksig.ext.ksig", "b.txt", "b.txt.ksig.ext.ksig", ""},
		{"lonely.ksig", "lonely", "lonely.ksig", "no document lonely beside the signature lonely.ksig"},
		{"c.txt", "c.txt", "c.txt.ksig", ""},
	}
	for _, tt := range tests {
		j := pairDocument(tt.arg)
		if j.doc != tt.doc || j.sig != tt.sig || (tt.err == "") != (j.err == nil) || (j.err != nil && !strings.Contains(j.err.Error(), tt.err)) {
			t.Errorf("pairDocument(%q) = %q, %q, %v; want %q, %q, %q", tt.arg, j.doc, j.sig, j.err, tt.doc, tt.sig, tt.err)
		}
	}
}
