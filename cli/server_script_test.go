package cli_test

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
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
		Condition:           hsmCondition,
		Setup: func(e *testscript.Env) error {
			port, err := freePort()
			if err != nil {
				return err
			}
			e.Setenv("PORT", strconv.Itoa(port))
			return nil
		},
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"exitcode":    cmdExitCode,
			"waitready":   cmdWaitReady,
			"capture":     cmdCapture,
			"waitseconds": cmdWaitSeconds,
			"damage":      cmdDamage,
			"ntpserver":   cmdNTPServer,
			"ntpskew":     cmdNTPSkew,
			"waitstatus":  cmdWaitStatus,
			"softhsm":     cmdSoftHSM,
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

// cmdWaitSeconds waits until the calendar at URL (REST, development mode)
// has appended N more seconds than when the command started, so that a
// script knows the store holds them:
//
//	waitseconds URL N
func cmdWaitSeconds(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitseconds URL N")
	}
	n, err := strconv.ParseUint(args[1], 10, 64)
	ts.Check(err)
	re := regexp.MustCompile(`"lastTime":"?(\d+)`)
	head := func() (uint64, error) {
		resp, err := http.Get(args[0] + "/v1/calendar/head")
		if err != nil {
			return 0, err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := re.FindSubmatch(b)
		if m == nil {
			return 0, fmt.Errorf("calendar head: %s %s", resp.Status, b)
		}
		return strconv.ParseUint(string(m[1]), 10, 64)
	}
	deadline := time.Now().Add(readyTimeout)
	start, err := head()
	for err != nil && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		start, err = head()
	}
	ts.Check(err)
	for time.Now().Before(deadline) {
		if last, err := head(); err == nil && last >= start+n {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	ts.Fatalf("waitseconds: the calendar did not advance %d seconds from %d", n, start)
}

// cmdDamage harms or copies a calendar store the way disks and operators
// do:
//
//	damage wal-truncate DIR     cut the newest WAL in DIR to half its size
//	damage wal-unchanged DIR    the newest WAL is still as wal-truncate left it
//	damage copy DIR OLD         copy the store DIR to OLD
//	damage replace DIR OLD      replace the store DIR by the copy OLD
func cmdDamage(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: damage wal-truncate|wal-unchanged|copy|replace DIR [OLD]")
	}
	dir := ts.MkAbs(args[1])
	newestWAL := func() (string, []byte) {
		logs, _ := filepath.Glob(filepath.Join(dir, "*.log"))
		if len(logs) == 0 {
			ts.Fatalf("damage: no WAL in %s", dir)
		}
		b, err := os.ReadFile(logs[len(logs)-1])
		ts.Check(err)
		return logs[len(logs)-1], b
	}
	switch args[0] {
	case "wal-truncate":
		name, b := newestWAL()
		ts.Check(os.Truncate(name, int64(len(b)/2)))
		sum := sha256.Sum256(b[:len(b)/2])
		ts.Setenv("DAMAGED_WAL", name+" "+hex.EncodeToString(sum[:]))
	case "wal-unchanged":
		name, b := newestWAL()
		sum := sha256.Sum256(b)
		if got := name + " " + hex.EncodeToString(sum[:]); got != ts.Getenv("DAMAGED_WAL") {
			ts.Fatalf("damage: the WAL changed since it was damaged: %s, was %s", got, ts.Getenv("DAMAGED_WAL"))
		}
	case "copy":
		ts.Check(os.CopyFS(ts.MkAbs(args[2]), os.DirFS(dir)))
	case "replace":
		ts.Check(os.RemoveAll(dir))
		ts.Check(os.Rename(ts.MkAbs(args[2]), dir))
	default:
		ts.Fatalf("damage: unknown mode %q", args[0])
	}
}
