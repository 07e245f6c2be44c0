package cli

import (
	"bytes"
	"context"
	"crypto/x509/pkix"
	"encoding/asn1"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

func TestPermute(t *testing.T) {
	flags := []ucli.Flag{
		&ucli.StringFlag{Name: "sig", Aliases: []string{"s"}},
		&ucli.BoolFlag{Name: "json"},
		&ucli.StringSliceFlag{Name: "cnstr"},
	}
	sub := &ucli.Command{Name: "gen", Flags: []ucli.Flag{&ucli.StringFlag{Name: "out"}}}
	cmds := []*ucli.Command{
		{Name: "verify", Flags: flags},
		{Name: "keys", Subcommands: []*ucli.Command{sub}},
	}
	tests := []struct {
		name string
		args []string
		want []string
	}{
		{"empty", nil, nil},
		{"command only", []string{"verify"}, []string{"verify"}},
		{"flags first already", []string{"verify", "--sig", "a", "doc"}, []string{"verify", "--sig", "a", "--", "doc"}},
		{"flag after positional", []string{"verify", "doc", "--sig", "a", "--json"}, []string{"verify", "--sig", "a", "--json", "--", "doc"}},
		{"alias and = form", []string{"verify", "doc", "-s", "a", "--sig=b"}, []string{"verify", "-s", "a", "--sig=b", "--", "doc"}},
		{"bool does not eat the next argument", []string{"verify", "--json", "doc"}, []string{"verify", "--json", "--", "doc"}},
		{"value that looks like a flag", []string{"verify", "--cnstr", "-x", "doc"}, []string{"verify", "--cnstr", "-x", "--", "doc"}},
		{"double dash ends flags", []string{"verify", "--", "--json", "doc"}, []string{"verify", "--", "--json", "doc"}},
		{"single dash is positional", []string{"verify", "-", "--json"}, []string{"verify", "--json", "--", "-"}},
		{"unknown flag kept for the parser", []string{"verify", "doc", "--bogus"}, []string{"verify", "--bogus", "--", "doc"}},
		{"missing value at the end", []string{"verify", "doc", "--sig"}, []string{"verify", "--sig", "--", "doc"}},
		{"unknown command", []string{"frob", "--json"}, []string{"--", "frob", "--json"}},
		{"help command", []string{"help", "verify"}, []string{"--", "help", "verify"}},
		{"subcommand", []string{"keys", "gen", "x", "--out", "f"}, []string{"keys", "gen", "--out", "f", "--", "x"}},
		{"root flag before command", []string{"--help", "verify", "doc", "--json"}, []string{"--help", "verify", "--json", "--", "doc"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := permute(nil, cmds, tt.args)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("permute(%q) (-want +got):\n%s", tt.args, diff)
			}
		})
	}
}

func TestResolvePolicy(t *testing.T) {
	tests := []struct {
		name     string
		explicit bool
		pubStr   bool
		want     verifier.Policy
		wantErr  string
	}{
		{"default", false, false, verifier.Default, ""},
		{"default", false, true, verifier.UserPublicationBased, ""},
		{"internal", true, false, verifier.Internal, ""},
		{"key", true, false, verifier.KeyBased, ""},
		{"publication", true, false, verifier.PublicationsFileBased, ""},
		{"calendar", true, false, verifier.CalendarBased, ""},
		{"user-publication", true, true, verifier.UserPublicationBased, ""},
		{"user-publication", true, false, 0, "needs the publication"},
		{"key", true, true, 0, "only used by the user-publication policy"},
		{"nonsense", true, false, 0, "unknown policy"},
	}
	for _, tt := range tests {
		got, err := resolvePolicy(tt.name, tt.explicit, tt.pubStr)
		if tt.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Errorf("resolvePolicy(%q, %v, %v) error = %v, want %q", tt.name, tt.explicit, tt.pubStr, err, tt.wantErr)
			}
			assertExitCode(t, err, ExitError)
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("resolvePolicy(%q, %v, %v) = %v, %v; want %v", tt.name, tt.explicit, tt.pubStr, got, err, tt.want)
		}
	}
}

func TestPlanJobs(t *testing.T) {
	h := ksi.Imprint(append([]byte{1}, make([]byte, 32)...))
	tests := []struct {
		name    string
		docs    []string
		sig     string
		hash    ksi.Imprint
		want    []verifyJob
		wantErr string
	}{
		{"documents beside signatures", []string{"a.pdf", "b"}, "", nil, []verifyJob{{doc: "a.pdf", sig: "a.pdf.ksig"}, {doc: "b", sig: "b.ksig"}}, ""},
		{"one document, named signature", []string{"a.pdf"}, "x.ksig", nil, []verifyJob{{doc: "a.pdf", sig: "x.ksig"}}, ""},
		{"signature alone", nil, "x.ksig", nil, []verifyJob{{sig: "x.ksig"}}, ""},
		{"hash", nil, "x.ksig", h, []verifyJob{{hash: h, sig: "x.ksig"}}, ""},
		{"nothing", nil, "", nil, nil, "nothing to verify"},
		{"hash without signature", nil, "", h, nil, "needs --sig"},
		{"hash and document", []string{"a"}, "x.ksig", h, nil, "give one or the other"},
		{"signature for two documents", []string{"a", "b"}, "x.ksig", nil, nil, "one document, got 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := planJobs(tt.docs, tt.sig, "", tt.hash)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				assertExitCode(t, err, ExitError)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.AllowUnexported(verifyJob{})); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

func TestWorse(t *testing.T) {
	// Best to worst: OK, INCONCLUSIVE, ERROR, FAILED.
	order := []int{ExitOK, ExitInconclusive, ExitError, ExitFailed}
	for i, a := range order {
		for j, b := range order {
			want := order[max(i, j)]
			if got := worse(a, b); got != want {
				t.Errorf("worse(%d, %d) = %d, want %d", a, b, got, want)
			}
		}
	}
}

func TestVerdictLine(t *testing.T) {
	tests := []struct {
		v    verifyView
		want string
	}{
		{verifyView{result: verifier.OK}, "OK: signature verified"},
		{verifyView{result: verifier.FAIL, Code: verifier.GEN01, Message: "Wrong document: x differs"}, "FAILED: wrong document (GEN-01)"},
		{verifyView{result: verifier.FAIL, Code: verifier.KEY02, Message: "PKI signature not verified with certificate"}, "FAILED: PKI signature not verified with certificate (KEY-02)"},
		{verifyView{result: verifier.NA, Code: verifier.GEN02, Message: "Verification inconclusive: no publications file"}, "INCONCLUSIVE: no publications file (GEN-02)"},
		{verifyView{result: verifier.NA, Code: verifier.GEN02, Message: "Verification inconclusive"}, "INCONCLUSIVE: verification inconclusive (GEN-02)"},
	}
	for _, tt := range tests {
		if got := tt.v.verdictLine(); got != tt.want {
			t.Errorf("verdictLine(%+v) = %q, want %q", tt.v, got, tt.want)
		}
	}
}

func TestTrustCheck(t *testing.T) {
	tests := []struct {
		name    string
		t       trustOptions
		wantErr string
		wantN   int
	}{
		{"nothing", trustOptions{}, "", 0},
		{"no verify", trustOptions{pubfile: "p", noVerify: true}, "", 0},
		{"full trust", trustOptions{pubfile: "p", roots: []string{"r"}, cnstr: []string{"E=a@b", "CN=x"}}, "", 2},
		{"file alone", trustOptions{pubfile: "p"}, "add --trust-root CERT (the root certificate of its signer) and --cnstr", 0},
		{"no constraint", trustOptions{pubfile: "p", roots: []string{"r"}}, "add --cnstr", 0},
		{"no root", trustOptions{pubfile: "p", cnstr: []string{"E=a@b"}}, "add --trust-root", 0},
		{"both ways", trustOptions{pubfile: "p", noVerify: true, roots: []string{"r"}}, "one or the other", 0},
		{"trust without file", trustOptions{cnstr: []string{"E=a@b"}}, "add --pubfile", 0},
		{"no verify without file", trustOptions{noVerify: true}, "add --pubfile", 0},
		{"bad constraint", trustOptions{pubfile: "p", roots: []string{"r"}, cnstr: []string{"E"}}, "--cnstr: ", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cs, err := tt.t.check()
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				assertExitCode(t, err, ExitError)
				return
			}
			if err != nil || len(cs) != tt.wantN {
				t.Fatalf("check() = %v, %v; want %d constraints", cs, err, tt.wantN)
			}
		})
	}
}

func TestReadSource(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f.bin")
	if err := os.WriteFile(path, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/ok", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("0123456789")) })
	mux.HandleFunc("/big", func(w http.ResponseWriter, _ *http.Request) { w.Write(make([]byte, 100)) })
	mux.HandleFunc("/chunked", func(w http.ResponseWriter, _ *http.Request) {
		// Flushing before the end hides the length from the client, so
		// the limit is enforced while reading.
		for range 10 {
			w.Write(make([]byte, 10))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(5 * time.Second):
		}
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	client := &http.Client{Timeout: 200 * time.Millisecond}

	tests := []struct {
		name, src string
		want      string
		wantErr   string
	}{
		{"file", path, "0123456789", ""},
		{"file URL", "file://" + path, "0123456789", ""},
		{"file URL with a host", "file://example.org" + path, "", "only local files"},
		{"missing file", filepath.Join(dir, "nope"), "", "no such file"},
		{"http", srv.URL + "/ok", "0123456789", ""},
		{"http not found", srv.URL + "/missing", "", "404 Not Found"},
		{"http too large", srv.URL + "/big", "", "larger than the accepted size"},
		{"http too large, no length", srv.URL + "/chunked", "", "larger than the accepted size"},
		{"http timeout", srv.URL + "/slow", "", "Timeout"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := readSource(context.Background(), client, tt.src, 10)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("readSource = %q, %v; want %q", got, err, tt.want)
			}
		})
	}
	if _, err := readFileLimited(path, 9); !errors.Is(err, errTooLarge) {
		t.Errorf("readFileLimited over the limit: %v, want errTooLarge", err)
	}
}

func TestIsURL(t *testing.T) {
	for s, want := range map[string]bool{
		"http://x/p": true, "HTTPS://x": true, "file:///p": true,
		"/tmp/p": false, "p.bin": false, "ftp://x": false, "http:": false,
	} {
		if got := isURL(s); got != want {
			t.Errorf("isURL(%q) = %v, want %v", s, got, want)
		}
	}
}

func TestFormatName(t *testing.T) {
	n := pkix.Name{Names: []pkix.AttributeTypeAndValue{
		{Type: asn1.ObjectIdentifier{2, 5, 4, 6}, Value: "EE"},
		{Type: asn1.ObjectIdentifier{2, 5, 4, 10}, Value: "Guardtime AS"},
		{Type: asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}, Value: "publications@guardtime.com"},
		{Type: asn1.ObjectIdentifier{1, 2, 3}, Value: "x"},
	}}
	want := "C=EE, O=Guardtime AS, E=publications@guardtime.com, 1.2.3=x"
	if got := formatName(n); got != want {
		t.Errorf("formatName = %q, want %q", got, want)
	}
}

func TestLowerFirst(t *testing.T) {
	for in, want := range map[string]string{
		"Wrong document":    "wrong document",
		"PKI signature not": "PKI signature not",
		"RFC3161 record":    "RFC3161 record",
		"":                  "",
		"X":                 "X",
	} {
		if got := lowerFirst(in); got != want {
			t.Errorf("lowerFirst(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestRunRecoversPanic checks that a bug in a command ends as one line
// and exit code 3, not a stack trace.
func TestRunRecoversPanic(t *testing.T) {
	old := commands
	t.Cleanup(func() { commands = old })
	commands = append(slices.Clone(old), func() *ucli.Command {
		return &ucli.Command{Name: "boom", Action: func(*ucli.Context) error { panic("kaboom") }}
	})
	var stdout, stderr bytes.Buffer
	code := Run(context.Background(), []string{"tempel", "boom"}, &stdout, &stderr)
	if code != ExitError {
		t.Errorf("exit code %d, want %d", code, ExitError)
	}
	if got, want := stderr.String(), "tempel: internal error: kaboom\n"; got != want {
		t.Errorf("stderr = %q, want %q", got, want)
	}
}

// TestExitCodeOneLine checks that multi-line error messages (as x509 and
// PKCS#7 errors can be) are printed on one line.
func TestExitCodeOneLine(t *testing.T) {
	var stderr bytes.Buffer
	code := exitCode(&stderr, &exitError{code: ExitError, cmd: "tempel verify", err: errors.New("bad\n  thing")})
	if code != ExitError || stderr.String() != "tempel verify: bad thing\n" {
		t.Errorf("exitCode = %d, %q", code, stderr.String())
	}
	stderr.Reset()
	if code := exitCode(&stderr, silentExit(ExitFailed)); code != ExitFailed || stderr.Len() != 0 {
		t.Errorf("silent exit = %d, %q", code, stderr.String())
	}
}

func TestEveryCommandHasHelpAndUsageErrors(t *testing.T) {
	for _, c := range App().Commands {
		if c.Usage == "" || c.Description == "" {
			t.Errorf("command %s: missing Usage or Description", c.Name)
		}
		if c.OnUsageError == nil {
			t.Errorf("command %s: usage errors not mapped to exit code 3", c.Name)
		}
	}
}

func assertExitCode(t *testing.T, err error, want int) {
	t.Helper()
	var ee *exitError
	if !errors.As(err, &ee) || ee.code != want {
		t.Errorf("error %v: want exit code %d", err, want)
	}
}
