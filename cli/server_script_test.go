package cli_test

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestServerScripts runs testdata/server/*.txtar: scripts that start a
// real `tempel serve` in the background and drive the client commands
// (sign, extend, pubfile, verify --server) against it, the README tour
// among them. Each script gets its own free port ($PORT) and work
// directory, so they run in parallel.
//
// They live apart from testdata/script because they need $PORT and the
// commands below, which those scripts neither need nor get.
func TestServerScripts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts servers and waits for publications (a few seconds each)")
	}
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/server",
		RequireExplicitExec: true,
		RequireUniqueNames:  true,
		Setup: func(e *testscript.Env) error {
			port, err := freePort()
			if err != nil {
				return err
			}
			e.Setenv("PORT", strconv.Itoa(port))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":  cmdExitCode,
			"waitready": cmdWaitReady,
			"capture":   cmdCapture,
		},
	})
}

// freePort returns a TCP port that was free a moment ago. Another
// process could take it before the server binds it; on loopback in a
// test run that is rare enough, and the server then fails loudly.
func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// readyTimeout bounds waitready: a server creates its keys and calendar
// on first start, which under the race detector takes a few seconds.
const readyTimeout = 60 * time.Second

// cmdWaitReady polls URL until it answers 200 OK, so that a script
// waits exactly as long as the server needs instead of a fixed sleep. An
// https URL is checked against CAFILE, which the server may still be
// creating:
//
//	waitready URL [CAFILE]
func cmdWaitReady(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 1 || len(args) > 2 {
		ts.Fatalf("usage: waitready URL [CAFILE]")
	}
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	var last string
	for time.Now().Before(deadline) {
		if len(args) == 2 && hc.Transport == nil {
			pool := x509.NewCertPool()
			if b, err := os.ReadFile(ts.MkAbs(args[1])); err == nil && pool.AppendCertsFromPEM(b) {
				hc.Transport = &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}
			} else {
				last = "no CA file yet"
				time.Sleep(100 * time.Millisecond)
				continue
			}
		}
		resp, err := hc.Get(args[0])
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("waitready %s: not ready after %s: %s", args[0], readyTimeout, last)
}

// cmdCapture sets an environment variable to the first group of a
// regular expression matched against the last command's stdout, so that
// a later command can use a value an earlier one printed:
//
//	capture NAME REGEXP
func cmdCapture(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: capture NAME REGEXP")
	}
	re, err := regexp.Compile(`(?m)` + args[1])
	ts.Check(err)
	if re.NumSubexp() < 1 {
		ts.Fatalf("capture: %q has no group to capture", args[1])
	}
	m := re.FindStringSubmatch(ts.ReadFile("stdout"))
	if m == nil {
		ts.Fatalf("capture: no match for %q in stdout", args[1])
	}
	ts.Setenv(args[0], m[1])
	ts.Logf("%s=%s", args[0], m[1])
}
