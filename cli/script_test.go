package cli_test

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strconv"
	"testing"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/tempel-ksi/tempel/cli"
	"github.com/tempel-ksi/tempel/internal/testpack"
)

// TestMain lets the test binary act as the tempel command inside the
// scripts (testscript copies it into $PATH under that name).
func TestMain(m *testing.M) {
	testscript.Main(m, map[string]func(){
		"tempel": func() { os.Exit(cli.Main(os.Args)) },
	})
}

// TestScripts runs testdata/script/*.txtar. The scripts read the KSI test
// data in place through $KSI (the shared testdata/ksi folder), never
// copying it into the repository; $KSIURL serves the same folder over
// HTTP for the URL form of --pubfile.
func TestScripts(t *testing.T) {
	data := testpack.Root(t)
	srv := httptest.NewServer(http.FileServer(http.Dir(data)))
	t.Cleanup(srv.Close) // not defer: the scripts run as parallel subtests after this function returns
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(e *testscript.Env) error {
			e.Setenv("KSI", data)
			e.Setenv("KSIURL", srv.URL)
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode": cmdExitCode,
		},
	})
}

// cmdExitCode runs a program and checks its exit code, which the built-in
// exec only tells apart as zero or not:
//
//	exitcode N program [args...]
//
// stdout and stderr are kept for the following stdout/stderr checks.
func cmdExitCode(ts *testscript.TestScript, neg bool, args []string) {
	if neg {
		ts.Fatalf("exitcode does not support '!': give the expected code")
	}
	if len(args) < 2 {
		ts.Fatalf("usage: exitcode N program [args...]")
	}
	want, err := strconv.Atoi(args[0])
	if err != nil {
		ts.Fatalf("exitcode: bad code %q", args[0])
	}
	got := 0
	if err := ts.Exec(args[1], args[2:]...); err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			ts.Fatalf("exitcode: %v", err)
		}
		got = ee.ExitCode()
	}
	if got != want {
		ts.Fatalf("exit code %d, want %d", got, want)
	}
}
