package cli_test

import (
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// ntpServers are the scripts' NTP responders, by the variable that holds
// their address.
var ntpServers sync.Map // string → *atomic.Int64 (the responder's offset)

// cmdNTPServer starts an NTP responder on loopback UDP in the test
// process, answering with the wall clock moved by an offset (0 at first,
// see ntpskew), and sets VAR to its address until the script ends:
//
//	ntpserver VAR
func cmdNTPServer(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: ntpserver VAR")
	}
	conn, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	ts.Check(err)
	offset := new(atomic.Int64)
	key := ts.Getenv("WORK") + "/" + args[0]
	ntpServers.Store(key, offset)
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 512)
		for {
			k, from, err := conn.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if k < 48 {
				continue
			}
			now := time.Now().Add(time.Duration(offset.Load()))
			ntp := uint64(now.Unix()+2208988800)<<32 | uint64(now.Nanosecond())<<32/1e9
			p := make([]byte, 48)
			p[0], p[1] = 4<<3|4, 1 // version 4, server; stratum 1
			copy(p[24:32], buf[40:48])
			binary.BigEndian.PutUint64(p[32:], ntp)
			binary.BigEndian.PutUint64(p[40:], ntp)
			conn.WriteToUDP(p, from)
		}
	}()
	ts.Defer(func() { conn.Close(); <-done; ntpServers.Delete(key) })
	ts.Setenv(args[0], conn.LocalAddr().String())
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
	v.(*atomic.Int64).Store(int64(d))
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
