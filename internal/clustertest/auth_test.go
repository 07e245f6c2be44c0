package clustertest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestMembersAuthenticate runs the cluster with a users file: members
// reach each other with the member login's key, clients sign through any
// member with their own, and a member given a wrong member key cannot
// take part: its raft traffic and its forwarded rounds are refused, its
// clients get an authentication error, and the others go on.
func TestMembersAuthenticate(t *testing.T) {
	skipShort(t)
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:alice-key\ntempel-member:member-key\nadmin:admin-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEMPEL_CLUSTER_KEY", "member-key")
	c := newCluster(t, 3, "--users", users)
	c.login, c.key = "alice", "alice-key"
	for _, m := range c.members {
		m.login, m.key = "admin", "admin-key"
	}
	c.leader(30 * time.Second)
	l := startLoad(t, c, 2)
	c.waitSigned(l, time.Now(), 30*time.Second)

	// Member 3 again, with a key the others do not know.
	m := c.members[2]
	c.kill(m)
	t.Setenv("TEMPEL_CLUSTER_KEY", "wrong-key")
	c.start(m)
	c.waitFor("the others refusing member 3's raft traffic", 30*time.Second, func() bool {
		b, _ := os.ReadFile(c.members[0].dir + ".log")
		b2, _ := os.ReadFile(c.members[1].dir + ".log")
		return strings.Contains(string(b)+string(b2), "authentication refused")
	})
	// It cannot forward its clients' rounds to the leader either.
	doc := filepath.Join(t.TempDir(), "doc.txt")
	if err := os.WriteFile(doc, []byte("hello"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(tempelBin, "sign", "--server", m.addr, "--user", "alice", "--key", "alice-key", "--timeout", "3s", doc).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "authentication") {
		t.Fatalf("signing through the misconfigured member: %v\n%s", err, out)
	}
	c.waitSigned(l, time.Now(), 15*time.Second)
	c.kill(m)
	t.Setenv("TEMPEL_CLUSTER_KEY", "member-key")
	c.start(m)
	c.converged(30 * time.Second)
	c.check(l.end())
}
