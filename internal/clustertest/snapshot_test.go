package clustertest

import (
	"bufio"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestSnapshotCatchUp runs members that snapshot every 10 entries and
// keep 3 behind, so that a member down for a few seconds is behind the
// leader's compacted log, as one down for days is in production. A
// follower killed while the log moves on, and then the same follower
// wiped and rejoined, are each sent the leader's snapshot and fetch the
// calendar's leaves and the publications from a peer; afterwards every
// member holds the same calendar and file, and every answered signature
// extends through each of them.
func TestSnapshotCatchUp(t *testing.T) {
	skipShort(t)
	c := newCluster(t, 3, "--raft-snapshot-every", "10", "--raft-keep-entries", "3")
	ldr := c.leader(30 * time.Second)
	l := startLoad(t, c, 2)
	c.waitSigned(l, time.Now(), 30*time.Second)
	f, other := c.followers(ldr)

	catchUp := func(restart func()) {
		t.Helper()
		st, err := f.status()
		if err != nil {
			t.Fatal(err)
		}
		behind := st.Applied
		c.kill(f)
		// Past a snapshot and its kept entries, with a margin: the
		// leader no longer has the entries the follower needs.
		c.waitFor("the leader's log moving past the stopped follower", 60*time.Second, func() bool {
			st, err := ldr.status()
			return err == nil && st.Applied > behind+30
		})
		sentBefore := c.metric(ldr, "tempel_raft_snapshots_sent_total")
		servedBefore := c.metric(ldr, "tempel_raft_fetches_served_total") + c.metric(other, "tempel_raft_fetches_served_total")
		restart()
		c.waitFor("the follower restoring the leader's snapshot", 60*time.Second, func() bool {
			return c.metric(f, "tempel_raft_snapshots_restored_total") >= 1
		})
		c.converged(30 * time.Second)
		if sent := c.metric(ldr, "tempel_raft_snapshots_sent_total"); sent <= sentBefore {
			t.Fatalf("the leader counts %v snapshots sent, %v before", sent, sentBefore)
		}
		// The restarted process counts from 0: what it fetched, it
		// fetched in this restore.
		fetched := c.metric(f, "tempel_calendar_catchup_seconds_fetched_total")
		served := c.metric(ldr, "tempel_raft_fetches_served_total") + c.metric(other, "tempel_raft_fetches_served_total") - servedBefore
		if fetched == 0 || served == 0 {
			t.Fatalf("the follower fetched %v seconds, its peers served %v fetches", fetched, served)
		}
		t.Logf("the follower fetched %v seconds from its peers", fetched)
	}
	// Killed: its calendar and log are behind the leader's snapshot.
	catchUp(func() { c.start(f) })
	c.waitSigned(l, time.Now(), 15*time.Second)
	// Wiped: it fetches the whole calendar.
	catchUp(func() {
		wipeExceptKeys(t, f.dir)
		c.rejoin(f, other)
	})
	c.waitSigned(l, time.Now(), 15*time.Second)
	c.check(l.end())
}

// metric reads a counter or gauge without labels from a member's
// /metrics (0 when absent or unreachable).
func (c *cluster) metric(m *member, name string) float64 {
	req, err := http.NewRequest(http.MethodGet, m.url("/metrics"), nil)
	if err != nil {
		return 0
	}
	if m.login != "" {
		req.SetBasicAuth(m.login, m.key)
	}
	resp, err := m.client().Do(req)
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), name+" "); ok {
			f, _ := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f
		}
	}
	return 0
}
