package raftnode

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// refuse and stall as toySM.lie make ServeFetch fail, or wait until
// the fetch is given up.
const (
	refuse = "\x00refuse"
	stall  = "\x00stall"
)

// ServeFetch answers a request for the first count keys applied, one
// key per part.
func (s *toySM) ServeFetch(ctx context.Context, req []byte, send func([]byte) error) error {
	if len(req) != 8 {
		return fmt.Errorf("fetch request of %d bytes", len(req))
	}
	count := binary.BigEndian.Uint64(req)
	s.mu.Lock()
	if uint64(len(s.order)) < count {
		n := len(s.order)
		s.mu.Unlock()
		return fmt.Errorf("only %d keys here, %d asked", n, count)
	}
	keys := append([]string(nil), s.order[:count]...)
	lie := s.lie
	s.mu.Unlock()
	switch lie {
	case refuse:
		return errors.New("refusing to serve")
	case stall:
		<-ctx.Done()
		return ctx.Err()
	}
	for i, k := range keys {
		if i == 0 && lie != "" {
			k = lie
		}
		if err := send([]byte(k)); err != nil {
			return err
		}
	}
	return nil
}

// RestoreFrom restores a fetching machine: the keys come from the first
// peer that has them all and must hash to the snapshot's digest.
func (s *toySM) RestoreFrom(ctx context.Context, index uint64, data []byte, peers Fetcher) error {
	if !s.fetching {
		return s.Restore(index, data)
	}
	if len(data) != 40 {
		return fmt.Errorf("snapshot data of %d bytes", len(data))
	}
	count := binary.BigEndian.Uint64(data)
	var errs []error
	for _, id := range peers.Peers() {
		var keys []string
		var digest [32]byte
		err := peers.Fetch(ctx, id, data[:8], func(part []byte) error {
			keys = append(keys, string(part))
			digest = sha256.Sum256(append(digest[:], part...))
			return nil
		})
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("member %d: %w", id, err))
			continue
		case uint64(len(keys)) != count || string(digest[:]) != string(data[8:40]):
			return fmt.Errorf("member %d sent %d keys that do not hash to the snapshot's digest", id, len(keys))
		}
		s.mu.Lock()
		s.count, s.order, s.seen = count, keys, map[string]bool{}
		copy(s.digest[:], data[8:40])
		for _, k := range keys {
			s.seen[k] = true
		}
		s.applied = index
		s.restores++
		s.mu.Unlock()
		return nil
	}
	return fmt.Errorf("no peer had the keys: %w", errors.Join(errs...))
}

// A member whose machine was lost restores the log's snapshot at start
// by fetching the state it describes from a peer, the leader first and
// another when the leader cannot be reached; a peer that sends other
// state than the snapshot describes stops the member instead.
func TestRestoreFetchesFromPeers(t *testing.T) {
	c, l, f := fetchingCluster(t, "f", 200)

	// Its machine lost, the follower fetches; the leader fails to
	// answer, so the other member does.
	c.stop(f)
	l.sm.mu.Lock()
	l.sm.lie = refuse
	l.sm.mu.Unlock()
	f.sm = newToySM()
	f.sm.fetching = true
	c.start(f)
	waitFor(t, 10*time.Second, "the new machine restored from a peer", func() bool { return f.sm.restored() > 0 })
	c.waitSame(c.members, 200)
	c.proposeAll(c.members, keys("f", 200, 20))
	c.waitSame(c.members, 220)
	for _, k := range keys("f", 0, 220) {
		if !f.sm.has(k) {
			t.Fatalf("the restored follower lacks %q", k)
		}
	}
	for _, m := range c.others(f) {
		served := m.node.Status().FetchesServed
		if m == l && served != 0 || m != l && served == 0 {
			t.Fatalf("member %d (leader %v) served %d fetches; the leader refused, the other member should have", m.id, m == l, served)
		}
	}

	// Every peer lies: the restore fails and the member stops, saying so.
	c.stop(f)
	for _, m := range c.others(f) {
		m.sm.mu.Lock()
		m.sm.lie = "not-the-first-key"
		m.sm.mu.Unlock()
	}
	f.sm = newToySM()
	f.sm.fetching = true
	c.start(f)
	select {
	case <-f.node.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("a member restored from a lying peer kept running")
	}
	if err := f.node.Err(); err == nil || !strings.Contains(err.Error(), "do not hash to the snapshot's digest") {
		t.Fatalf("Err = %v, want the digest mismatch", err)
	}
	if f.sm.restored() != 0 {
		t.Fatal("the lying peer's state was taken")
	}
	// Its stop was expected: take it out of the cleanup's checks.
	f.srv.Stop()
	f.node.Stop()
	f.node, f.srv, f.lis = nil, nil, nil
}

// A member stopped while it restores (its peers answer nothing) stops
// cleanly: the restore cut short is not a fatal error, and while it
// lasts the member says it is restoring.
func TestStopDuringRestore(t *testing.T) {
	c, _, f := fetchingCluster(t, "s", 120)
	c.stop(f)
	for _, m := range c.others(f) {
		m.sm.mu.Lock()
		m.sm.lie = stall
		m.sm.mu.Unlock()
	}
	f.sm = newToySM()
	f.sm.fetching = true
	c.start(f)
	waitFor(t, 5*time.Second, "the member saying it restores", func() bool { return f.node.Status().Restoring })
	c.stop(f) // fails the test if the member recorded a fatal error
	for _, m := range c.others(f) {
		m.sm.mu.Lock()
		m.sm.lie = ""
		m.sm.mu.Unlock()
	}
	c.start(f)
	waitFor(t, 10*time.Second, "the restore done once the peers answer", func() bool { return f.sm.restored() > 0 })
	c.waitSame(c.members, 120)
}

// fetchingCluster is three members whose machines fetch on restore,
// with n entries committed and a snapshot in a follower's log; it
// returns the cluster, its leader and that follower.
func fetchingCluster(t *testing.T, prefix string, n int) (*tcluster, *tmember, *tmember) {
	t.Helper()
	c := newCluster(t, 3, func(cfg *Config) { cfg.SnapshotEvery, cfg.KeepEntries = 50, 10 })
	for _, m := range c.members {
		m.sm.fetching = true
	}
	c.proposeAll(c.members, keys(prefix, 0, n))
	l := c.leaderOf(c.members)
	f := c.others(l)[0]
	waitFor(t, 5*time.Second, "a snapshot in the follower's log", func() bool {
		snap, err := f.node.st.Snapshot()
		return err == nil && snap.GetMetadata().GetIndex() > 0
	})
	return c, l, f
}
