package raftlog

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
)

// crashDirEnv names the directory the child of TestCrashKeepsAcknowledged
// writes to; without it TestCrashChild does nothing.
const crashDirEnv = "RAFTLOG_CRASH_DIR"

// crashData is the payload of entry i written in term: the parent can
// tell a correct entry from any other bytes.
func crashData(i, term uint64) []byte {
	b := make([]byte, 200)
	binary.BigEndian.PutUint64(b, i)
	binary.BigEndian.PutUint64(b[8:], term)
	for k := 16; k < len(b); k++ {
		b[k] = byte(i*31 + term*7 + uint64(k))
	}
	return b
}

// TestCrashChild is the child process: it saves Readies in a loop (every
// fifth one replacing the last two entries with a newer term, as after a
// leader change) and prints "index term" after each Save returns, until
// it is killed.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(crashDirEnv)
	if dir == "" {
		t.Skip("run by TestCrashKeepsAcknowledged")
	}
	s, err := Open(dir, Options{})
	if err != nil {
		fmt.Println("open:", err)
		os.Exit(2)
	}
	out := bufio.NewWriter(os.Stdout)
	var last, term uint64 = 0, 1
	for n := 0; ; n++ {
		lo := last + 1
		if n%5 == 4 && last >= 2 {
			lo, term = last-1, term+1
		}
		var ents []*pb.Entry
		for i := lo; i < lo+4; i++ {
			ents = append(ents, entry(i, term, crashData(i, term)))
		}
		last = lo + 3
		// Commit trails the log by two, so a replaced suffix is never
		// committed.
		hs := &pb.HardState{Term: new(term), Vote: new(uint64(1)), Commit: new(last - 2)}
		if err := s.Save(hs, ents, nil); err != nil {
			fmt.Println("save:", err)
			os.Exit(2)
		}
		fmt.Fprintf(out, "%d %d\n", last, term)
		out.Flush()
	}
}

// TestCrashKeepsAcknowledged kills a process that is saving in a loop with
// SIGKILL and reopens its log: every Save it acknowledged is there, and
// the log is a consistent sequence (each entry the one its writer wrote,
// terms not decreasing, commit within the log).
func TestCrashKeepsAcknowledged(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns processes")
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	for round := range 3 {
		dir := t.TempDir()
		cmd := exec.Command(exe, "-test.run=^TestCrashChild$", "-test.v=false")
		cmd.Env = append(os.Environ(), crashDirEnv+"="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Kill after a number of acknowledged Saves that differs per
		// round, so the kill lands at different points of the loop.
		target := 150 + 97*round
		var ackIndex, ackTerm uint64
		sc := bufio.NewScanner(stdout)
		deadline := time.AfterFunc(40*time.Second, func() { cmd.Process.Kill() })
		for n := 0; n < target && sc.Scan(); n++ {
			f := strings.Fields(sc.Text())
			if len(f) != 2 {
				t.Fatalf("child said %q (stderr %s)", sc.Text(), stderr.String())
			}
			ackIndex, _ = strconv.ParseUint(f[0], 10, 64)
			ackTerm, _ = strconv.ParseUint(f[1], 10, 64)
		}
		deadline.Stop()
		if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		cmd.Wait()
		if ackIndex == 0 {
			t.Fatalf("child acknowledged nothing (stderr %s)", stderr.String())
		}

		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatalf("reopen after SIGKILL: %v", err)
		}
		last, _ := s.LastIndex()
		if last < ackIndex {
			t.Fatalf("log ends at %d; index %d was acknowledged", last, ackIndex)
		}
		ents, err := s.Entries(1, last+1, 1<<62)
		if err != nil {
			t.Fatal(err)
		}
		prev := uint64(0)
		for _, e := range ents {
			if !bytes.Equal(e.GetData(), crashData(e.GetIndex(), e.GetTerm())) {
				t.Fatalf("entry %d (term %d) holds bytes its writer did not write", e.GetIndex(), e.GetTerm())
			}
			if e.GetTerm() < prev {
				t.Fatalf("entry %d has term %d after term %d", e.GetIndex(), e.GetTerm(), prev)
			}
			prev = e.GetTerm()
		}
		// The acknowledged entry is there, or replaced by a later
		// Save with a newer term.
		if term, err := s.Term(ackIndex); err != nil || term < ackTerm {
			t.Fatalf("acknowledged entry %d term %d: now term %d, %v", ackIndex, ackTerm, term, err)
		}
		hs, _, _ := s.InitialState()
		if hs.GetCommit() < ackIndex-2 {
			t.Fatalf("commit %d, acknowledged %d", hs.GetCommit(), ackIndex-2)
		}
		t.Logf("round %d: acknowledged %d, found %d entries, commit %d", round, ackIndex, last, hs.GetCommit())
		s.Close()
	}
}
