package clustertest

import (
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// failovers is how many times TestKillLeader kills the leader
// (TEMPEL_CLUSTER_FAILOVERS; 3 by default, to keep CI short).
func failovers() int {
	if n, err := strconv.Atoi(os.Getenv("TEMPEL_CLUSTER_FAILOVERS")); err == nil && n > 0 {
		return n
	}
	return 3
}

// TestKillLeader kills the leader with SIGKILL under continuous signing,
// then a random member, again and again, restarting each: signing
// resumes, and nothing answered is lost or differs between members.
func TestKillLeader(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3)
	c.leader(30 * time.Second)
	l := startLoad(t, c, 4)
	c.waitSigned(l, time.Now(), 30*time.Second)
	var leaderGaps, memberGaps []time.Duration
	for range failovers() {
		old := c.leader(15 * time.Second)
		t0 := time.Now()
		c.kill(old)
		c.leader(15 * time.Second)
		leaderGaps = append(leaderGaps, c.waitSigned(l, t0, 15*time.Second))
		c.start(old)
		c.converged(30 * time.Second)

		m := c.members[rand.IntN(len(c.members))]
		t0 = time.Now()
		c.kill(m)
		c.leader(15 * time.Second)
		memberGaps = append(memberGaps, c.waitSigned(l, t0, 15*time.Second))
		c.start(m)
		c.converged(30 * time.Second)
	}
	t.Logf("leader killed: first signature after %s", durations(leaderGaps))
	t.Logf("random member killed: first signature after %s", durations(memberGaps))
	c.check(l.end())
}

// TestPausedLeader stops the leader with SIGSTOP for longer than the
// election timeout: the others elect a leader and go on; the old leader,
// continued, must not have answered anything of seconds it no longer led.
func TestPausedLeader(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3)
	old := c.leader(30 * time.Second)
	l := startLoad(t, c, 4)
	c.waitSigned(l, time.Now(), 30*time.Second)
	t0 := time.Now()
	if err := old.cmd.Process.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	paused := old.cmd
	old.cmd = nil // not running, for leader() and converged()
	c.leader(15 * time.Second)
	t.Logf("leader paused: first signature after %v", c.waitSigned(l, t0, 15*time.Second).Round(time.Millisecond))
	old.cmd = paused
	if err := old.cmd.Process.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	c.converged(30 * time.Second)
	c.waitSigned(l, time.Now(), 15*time.Second)
	c.check(l.end())
}

// TestWipedFollower wipes a follower's data directory and repairs it
// the documented way: remove it, add it again with the same id
// (`tempel cluster remove|add`, sent to any member), start it with
// --join; it is rebuilt from its peers' log and votes again once caught up.
func TestWipedFollower(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3)
	ldr := c.leader(30 * time.Second)
	l := startLoad(t, c, 2)
	c.waitSigned(l, time.Now(), 30*time.Second)
	f, other := c.followers(ldr)
	c.kill(f)
	// Everything but its keys, which an operator keeps apart (or in an
	// HSM): the calendar, the raft log, the watermark.
	wipeExceptKeys(t, f.dir)
	c.waitSigned(l, time.Now(), 15*time.Second)
	c.rejoin(f, other)
	c.waitFor("the wiped member voting again", 30*time.Second, func() bool {
		st, err := ldr.status()
		if err != nil {
			return false
		}
		for _, m := range st.Members {
			if m.ID == uint64(f.id) {
				return !m.Learner
			}
		}
		return false
	})
	c.converged(30 * time.Second)
	t.Log(c.tempel("cluster", "status", "--server", f.addr))
	c.waitSigned(l, time.Now(), 15*time.Second)
	c.check(l.end())
}

// TestDamagedLogTail cuts the tail off a stopped follower's raft log (its
// Pebble WAL), as a disk that lost its last writes would. The member
// either finds its log behind its calendar and refuses to start, naming
// the repair, which the test then does (wipe the raft log, remove and
// add the member, start it with --join: it keeps its calendar and skips
// what it has applied), or its log is still consistent and it catches up.
// Either way nothing answered differs between members.
func TestDamagedLogTail(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3)
	ldr := c.leader(30 * time.Second)
	l := startLoad(t, c, 2)
	c.waitSigned(l, time.Now(), 30*time.Second)
	f, other := c.followers(ldr)
	c.kill(f)
	wal := newestWAL(t, filepath.Join(f.dir, "raft"))
	info, err := os.Stat(wal)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(wal, info.Size()*2/3); err != nil {
		t.Fatal(err)
	}
	c.start(f)
	var refused bool
	c.waitFor("the damaged member refusing or catching up", 30*time.Second, func() bool {
		select {
		case <-f.done:
			refused = true
			f.cmd = nil
			return true
		default:
		}
		st, err := f.status()
		lst, lerr := ldr.status()
		return err == nil && lerr == nil && st.Applied >= lst.Commit && lst.Commit > 0
	})
	if refused {
		b, _ := os.ReadFile(f.dir + ".log")
		if !strings.Contains(string(b), "rejoin the member") {
			t.Fatalf("the member stopped without naming the repair:\n%s", b)
		}
		if err := os.RemoveAll(filepath.Join(f.dir, "raft")); err != nil {
			t.Fatal(err)
		}
		// Without --join a member with a calendar and no raft log refuses
		// to bootstrap a new one (it could vote twice in a term).
		c.start(f)
		select {
		case <-f.done:
			f.cmd = nil
		case <-time.After(30 * time.Second):
			t.Fatal("a member without its raft log started without --join")
		}
		if b, _ := os.ReadFile(f.dir + ".log"); !strings.Contains(string(b), "start it with --join") {
			t.Fatalf("the member without its log did not say how to rejoin:\n%s", b)
		}
		c.rejoin(f, other)
	}
	t.Logf("damaged log refused at start: %v", refused)
	c.converged(30 * time.Second)
	c.waitSigned(l, time.Now(), 15*time.Second)
	c.check(l.end())
}

// newestWAL is the newest Pebble write-ahead log file in dir.
func newestWAL(t *testing.T, dir string) string {
	t.Helper()
	logs, err := filepath.Glob(filepath.Join(dir, "*.log"))
	if err != nil || len(logs) == 0 {
		t.Fatalf("no WAL in %s: %v", dir, err)
	}
	sort.Strings(logs)
	return logs[len(logs)-1]
}

// wipeExceptKeys removes everything in a data directory but its keys.
func wipeExceptKeys(t *testing.T, dir string) {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.Name() == "keys" {
			continue
		}
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			t.Fatal(err)
		}
	}
}

// TestNoQuorum kills two of three members: the one left answers nothing
// (it cannot commit) and says why; when one returns, signing resumes and
// nothing answered before is lost.
func TestNoQuorum(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3)
	c.leader(30 * time.Second)
	l := startLoad(t, c, 2)
	c.waitSigned(l, time.Now(), 30*time.Second)
	c.kill(c.members[0])
	c.kill(c.members[1])
	left := c.members[2]
	c.waitFor("the last member saying it cannot answer", 15*time.Second, func() bool { return !left.ready() })
	doc := filepath.Join(t.TempDir(), "doc.txt")
	if err := os.WriteFile(doc, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tempelBin, "sign", "--server", left.addr, "--timeout", "3s", doc).CombinedOutput()
	if err == nil {
		t.Fatalf("signed without a quorum:\n%s", out)
	}
	t0 := time.Now()
	c.start(c.members[0])
	t.Logf("quorum back: first signature after %v", c.waitSigned(l, t0, 30*time.Second).Round(time.Millisecond))
	c.start(c.members[1])
	c.converged(30 * time.Second)
	c.check(l.end())
}

// followers returns the two members that do not lead.
func (c *cluster) followers(ldr *member) (f, other *member) {
	for _, m := range c.members {
		switch {
		case m == ldr:
		case f == nil:
			f = m
		default:
			other = m
		}
	}
	return f, other
}

// rejoin repairs member f the documented way, through member via:
// `tempel cluster remove`, `tempel cluster add` (which shows it as a
// learner), then `tempel serve --join`.
func (c *cluster) rejoin(f, via *member) {
	c.t.Helper()
	id := strconv.Itoa(f.id)
	c.tempel("cluster", "remove", "--server", via.addr, id)
	if out := c.tempel("cluster", "add", "--server", via.addr, id, f.addr); !strings.Contains(out, "learner") {
		c.t.Fatalf("cluster add did not show the learner:\n%s", out)
	}
	c.start(f, "--join")
}
