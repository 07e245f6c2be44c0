package cli_test

import (
	"io"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
	"github.com/tempel-ksi/tempel/internal/ntpcheck/ntptest"
)

// ntpServers are the scripts' NTP responders, by the variable that holds
// their address.
var ntpServers sync.Map // string → *ntptest.Server

// cmdNTPServer starts an NTP responder on loopback UDP in the test
// process, answering with the wall clock moved by an offset (0 at first,
// see ntpskew), and sets VAR to its address until the script ends:
//
//	ntpserver VAR
func cmdNTPServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: ntpserver VAR")
	}
	srv, err := ntptest.Start()
	ts.Check(err)
	key := ts.Getenv("WORK") + "/" + args[0]
	ntpServers.Store(key, srv)
	ts.Defer(func() { srv.Close(); ntpServers.Delete(key) })
	ts.Setenv(args[0], srv.Addr())
}

// cmdNTPSkew sets the offset of the responder whose address VAR holds:
//
//	ntpskew VAR DURATION
func cmdNTPSkew(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: ntpskew VAR DURATION")
	}
	v, ok := ntpServers.Load(ts.Getenv("WORK") + "/" + args[0])
	if !ok {
		ts.Fatalf("ntpskew: no ntpserver %s", args[0])
	}
	d, err := time.ParseDuration(args[1])
	ts.Check(err)
	v.(*ntptest.Server).SetOffset(d)
}

// cmdWaitStatus polls URL until it answers with CODE and a body that
// matches REGEXP (within readyTimeout):
//
//	waitstatus URL CODE REGEXP
func cmdWaitStatus(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: waitstatus URL CODE REGEXP")
	}
	code, err := strconv.Atoi(args[1])
	ts.Check(err)
	re, err := regexp.Compile(args[2])
	ts.Check(err)
	hc := &http.Client{Timeout: time.Second}
	deadline := time.Now().Add(readyTimeout)
	var last string
	for time.Now().Before(deadline) {
		resp, err := hc.Get(args[0])
		if err == nil {
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode == code && re.Match(b) {
				return
			}
			last = resp.Status + ": " + string(b)
		} else {
			last = err.Error()
		}
		time.Sleep(100 * time.Millisecond)
	}
	ts.Fatalf("waitstatus %s: no %d matching %q after %s: %s", args[0], code, args[2], readyTimeout, last)
}
