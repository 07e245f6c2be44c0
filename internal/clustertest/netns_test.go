//go:build linux

package clustertest

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc"

	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/pki"
)

// TestPartitionedLeader cuts the leader's network cable (its veth, in a
// network namespace of its own) under continuous signing, for longer than
// the election timeout: the two others elect a leader and signing through
// them resumes; the cut-off leader answers no signature of any second
// from the cut on (a client on its side of the cut gets errors) and its
// readiness says it has no quorum. Healed, it follows the new leader and
// catches up, and nothing answered differs between members.
func TestPartitionedLeader(t *testing.T) {
	skipShort(t)
	start := time.Now()
	lab := newNetLab(t, 3)
	c := newNetnsCluster(t, lab)
	old := c.leader(30 * time.Second)
	l := startLoad(t, c, 4)
	c.waitSigned(l, time.Now(), 30*time.Second)

	// A client on the leader's side of the cut: in its namespace, it
	// reaches the leader only.
	mine := startLoadWith(t, client.Config{Endpoints: []string{old.endpoint()}, Parallel: 1, Timeout: 2 * time.Second, Retries: -1,
		Login: c.login, Key: c.key, TLS: c.tls, DialOptions: []grpc.DialOption{grpc.WithContextDialer(nsDialer(old.netns))}}, 2)
	c.waitSigned(mine, time.Now(), 15*time.Second)

	lab.cut(old)
	// Taken after the cut: second cutSecond ends after it, so no member
	// (all read this machine's clock) can have closed it before the cut.
	tCut := time.Now()
	cutSecond := uint64(tCut.Unix())
	var others []*member
	for _, m := range c.members {
		if m != old {
			others = append(others, m)
		}
	}
	var ldr *member
	c.waitFor("a leader with a quorum among the two others", 15*time.Second, func() bool {
		for _, m := range others {
			if st, err := m.status(); err == nil && st.IsLeader && st.HasQuorum && m.ready() {
				ldr = m
				return true
			}
		}
		return false
	})
	ldrStatus, err := ldr.status()
	if err != nil {
		t.Fatal(err)
	}
	elected := time.Since(tCut)
	// Calls in flight at the cut-off member wait for the SDK's timeout
	// (4 s) before they go to another.
	c.waitFor("a signature of a second after the cut", 30*time.Second, func() bool { return l.signedAfter(cutSecond) })
	t.Logf("leader %d cut off: member %d leads (term %d) after %v; a signature of a later second after %v",
		old.id, ldr.id, ldrStatus.Term, elected.Round(time.Millisecond), time.Since(tCut).Round(time.Millisecond))

	c.waitFor("the cut-off leader's readiness saying it has no quorum", 15*time.Second, func() bool {
		code, body := readyz(old)
		return code != http.StatusOK && strings.Contains(body, "quorum")
	})
	_, why := readyz(old)
	// Hold the cut, asserting the old leader's own client is still
	// refused at the end of it.
	hold := tCut.Add(partitionHold())
	c.waitFor("the cut-off leader's client refused after the hold", time.Until(hold)+15*time.Second, func() bool { return mine.failedAfter(hold) })
	// CheckQuorum: a leader that heard from no majority for an election
	// timeout steps down.
	if st, err := old.status(); err != nil || st.IsLeader {
		t.Fatalf("the cut-off member still leads %v after the cut: %+v %v", time.Since(tCut).Round(time.Millisecond), st, err)
	}
	theirs := mine.end()
	checkMinority(t, theirs, tCut, cutSecond)
	t.Logf("cut-off leader not ready: %s", strings.TrimSpace(why))

	lab.heal(old)
	tHeal := time.Now()
	// Raft streams open across the cut resume when TCP retransmits, which
	// backs off the longer the cut lasts.
	catchUp := 30*time.Second + partitionHold()
	c.waitFor("the old leader following the new one", catchUp, func() bool {
		st, err := old.status()
		return err == nil && !st.IsLeader && st.Leader != 0 && st.Leader != uint64(old.id)
	})
	c.converged(catchUp)
	if st, err := ldr.status(); err == nil {
		t.Logf("healed: caught up after %v; member %d leads at term %d (term %d before the heal)",
			time.Since(tHeal).Round(time.Millisecond), st.Leader, st.Term, ldrStatus.Term)
	}
	c.waitSigned(l, time.Now(), 15*time.Second)
	c.check(append(l.end(), theirs...))
	t.Logf("whole test %v", time.Since(start).Round(time.Millisecond))
}

// partitionHold is how long TestPartitionedLeader keeps the leader cut
// off (TEMPEL_CLUSTER_PARTITION, a duration; 3 s, three election
// timeouts, by default).
func partitionHold() time.Duration {
	if d, err := time.ParseDuration(os.Getenv("TEMPEL_CLUSTER_PARTITION")); err == nil && d > 0 {
		return d
	}
	return 3 * time.Second
}

// checkMinority asserts what a client of the cut-off leader got: no
// signature of a second from the cut on, and errors after the cut.
func checkMinority(t *testing.T, answers []signed, tCut time.Time, cutSecond uint64) {
	t.Helper()
	var before, refused int
	var firstErr, lastErr error
	for _, a := range answers {
		if a.err != nil {
			if a.at.After(tCut) {
				refused++
				if firstErr == nil {
					firstErr = a.err
				}
				lastErr = a.err
			}
			continue
		}
		if sec := a.sig.CalendarChain.PublicationTime; sec >= cutSecond {
			t.Fatalf("the cut-off leader answered a signature of second %d, at %v; the cut was at %v (second %d)",
				sec, a.at.Format(time.StampMilli), tCut.Format(time.StampMilli), cutSecond)
		}
		before++
	}
	if refused == 0 {
		t.Fatal("the cut-off leader's client got no error after the cut")
	}
	t.Logf("the cut-off leader's client: %d signatures of seconds before the cut, %d calls refused after it (first: %v; last: %v)", before, refused, firstErr, lastErr)
}

// signedAfter reports whether a signature of a second after sec was answered.
func (l *load) signedAfter(sec uint64) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.answers {
		if a.err == nil && a.sig.CalendarChain.PublicationTime > sec {
			return true
		}
	}
	return false
}

// failedAfter reports whether a call made after t failed.
func (l *load) failedAfter(t time.Time) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.answers {
		if a.err != nil && a.at.After(t) {
			return true
		}
	}
	return false
}

// readyz is the member's GET /readyz: status code and body.
func readyz(m *member) (int, string) {
	resp, err := m.client().Get(m.url("/readyz"))
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	return resp.StatusCode, string(b)
}

// newNetnsCluster starts a 3-member cluster, one member in each of lab's
// namespaces, as off one machine: TLS with certificates naming the
// members' addresses, a users file with the member login. The test
// reaches each member's HTTP endpoints from inside its namespace; the
// signing load goes over the bridge from this one.
func newNetnsCluster(t *testing.T, lab *netLab) *cluster {
	t.Helper()
	root := t.TempDir()
	users := filepath.Join(root, "users")
	if err := os.WriteFile(users, []byte("alice:alice-key\ntempel-member:member-key\nadmin:admin-key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TEMPEL_CLUSTER_KEY", "member-key")
	c := &cluster{t: t, root: root, login: "alice", key: "alice-key", args: []string{"--tls", "--users", users}}
	var hosts, parts []string
	for i := range lab.ns {
		hosts = append(hosts, lab.ip(i))
	}
	c.tempel("keys", "init", "--data-dir", root, "--members", fmt.Sprint(len(lab.ns)), "--tls-hosts", strings.Join(hosts, ","))
	pool, err := pki.LoadCertPool(filepath.Join(root, pki.CADir, pki.RootCertFile))
	if err != nil {
		t.Fatal(err)
	}
	c.tls = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS13}
	for i, ns := range lab.ns {
		// A namespace of its own: the port is free.
		addr := net.JoinHostPort(hosts[i], "8441")
		m := &member{id: i + 1, addr: addr, dir: pki.MemberDataDir(root, i+1), login: "admin", key: "admin-key", netns: ns,
			web: &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: c.tls,
				DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) { return nsDialer(ns)(ctx, addr) }}}}
		c.members = append(c.members, m)
		parts = append(parts, fmt.Sprintf("%d=%s", m.id, addr))
	}
	c.spec = strings.Join(parts, ",")
	for _, m := range c.members {
		c.start(m)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			c.kill(m)
			m.web.CloseIdleConnections()
		}
		if t.Failed() {
			for _, m := range c.members {
				b, _ := os.ReadFile(m.dir + ".log")
				if keep := os.Getenv("TEMPEL_CLUSTER_LOGS"); keep != "" {
					os.WriteFile(filepath.Join(keep, fmt.Sprintf("%s-member%d.log", t.Name(), m.id)), b, 0o600)
				}
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("member %d (%s), last lines of its log:\n%s", m.id, m.addr, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	return c
}

// labPrefix starts the names of everything a netLab makes, followed by
// the test process's pid: tpnet<PID> (bridge), tpnet<PID>-<N>
// (namespaces), tpnet<PID>v<N> (the bridge's ends of the veths).
const labPrefix = "tpnet"

// netLab is a private network made by the test: a bridge in this
// namespace holding .254 of a /24 in 198.18.0.0/15 (the range RFC 2544
// sets aside for network tests), and one namespace per member, plugged
// into the bridge by a veth, its end named eth0 holding .N.
type netLab struct {
	t      *testing.T
	net    string // the first three octets and a dot
	bridge string // each name once made
	ns     []string
	veths  []string
}

// newNetLab makes a lab of n namespaces, removed when the test ends; it
// skips the test where namespaces cannot be made (no ip, not root, no
// permission).
func newNetLab(t *testing.T, n int) *netLab {
	t.Helper()
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skipf("needs the ip command (iproute2) to make network namespaces: %v", err)
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to make network namespaces (ip netns add)")
	}
	removeLeftovers(t)
	pid := os.Getpid()
	lab := &netLab{t: t}
	var err error
	if lab.net, err = freeSubnet(pid); err != nil {
		t.Skip(err)
	}
	t.Cleanup(lab.remove)
	// The first two steps show whether this machine lets us: skip if not.
	bridge := fmt.Sprintf("%s%d", labPrefix, pid)
	if err := ip("link", "add", bridge, "type", "bridge"); err != nil {
		t.Skipf("cannot make a bridge: %v", err)
	}
	lab.bridge = bridge
	for i := range n {
		ns := fmt.Sprintf("%s%d-%d", labPrefix, pid, i+1)
		if err := ip("netns", "add", ns); err != nil {
			if i == 0 {
				t.Skipf("cannot make a network namespace: %v", err)
			}
			t.Fatal(err)
		}
		lab.ns = append(lab.ns, ns)
	}
	lab.must("link", "set", bridge, "up")
	lab.must("addr", "add", lab.net+"254/24", "dev", bridge)
	for i, ns := range lab.ns {
		veth := fmt.Sprintf("%s%dv%d", labPrefix, pid, i+1)
		lab.must("link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", ns)
		lab.veths = append(lab.veths, veth)
		lab.must("link", "set", veth, "master", bridge, "up")
		lab.must("-n", ns, "addr", "add", lab.ip(i)+"/24", "dev", "eth0")
		lab.must("-n", ns, "link", "set", "eth0", "up")
		// Connections to the member's own address go through lo.
		lab.must("-n", ns, "link", "set", "lo", "up")
	}
	return lab
}

// ip is member i's address (0-based).
func (lab *netLab) ip(i int) string { return lab.net + strconv.Itoa(i+1) }

// cut unplugs member m's cable: the bridge's end of its veth goes down,
// so m reaches nobody and nobody reaches m, but it runs on.
func (lab *netLab) cut(m *member) { lab.must("link", "set", lab.veths[m.id-1], "down") }

// heal plugs it back in.
func (lab *netLab) heal(m *member) { lab.must("link", "set", lab.veths[m.id-1], "up") }

func (lab *netLab) must(args ...string) {
	lab.t.Helper()
	if err := ip(args...); err != nil {
		lab.t.Fatal(err)
	}
}

// remove deletes the veths, the namespaces and the bridge. The members
// were killed before (cleanups run last first). The veths go first: a
// namespace lives on after its deletion while the kernel still holds
// sockets of it (a killed member's unacknowledged data across a cut), and
// its veth with it.
func (lab *netLab) remove() {
	for _, v := range lab.veths {
		if err := ip("link", "del", v); err != nil {
			lab.t.Errorf("removing the lab: %v", err)
		}
	}
	for _, ns := range lab.ns {
		if err := ip("netns", "del", ns); err != nil {
			lab.t.Errorf("removing the lab: %v", err)
		}
	}
	if lab.bridge == "" {
		return
	}
	if err := ip("link", "del", lab.bridge); err != nil {
		lab.t.Errorf("removing the lab: %v", err)
	}
}

func ip(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// freeSubnet picks a /24 of 198.18.0.0/15 that no interface here uses,
// starting from one chosen by pid, so that concurrent runs differ.
func freeSubnet(pid int) (string, error) {
	out, err := exec.Command("ip", "-4", "-o", "addr", "show").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("ip -4 addr show: %w: %s", err, out)
	}
	for k := range 512 {
		i := (pid + k) % 512
		prefix := fmt.Sprintf("198.%d.%d.", 18+i/256, i%256)
		if !strings.Contains(string(out), "inet "+prefix) {
			return prefix, nil
		}
	}
	return "", errors.New("every /24 of 198.18.0.0/15 is in use here")
}

// removeLeftovers removes the bridges, veths and namespaces of earlier
// runs that were killed before their cleanup (their pid no longer runs),
// ending the members still running in those namespaces.
func removeLeftovers(t *testing.T) {
	t.Helper()
	// Bridges and veths first ("7: NAME: <FLAGS> ..." or "8: NAME@if2:
	// ..."): a veth goes with its namespace only once nothing holds it.
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 2 {
				continue
			}
			if name, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@"); stale(name) {
				if err := ip("link", "del", name); err != nil {
					t.Logf("leftover of an earlier run: %v", err)
				}
			}
		}
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		return // no namespaces, or none we may see
	}
	for _, line := range strings.Split(string(out), "\n") {
		name, _, _ := strings.Cut(strings.TrimSpace(line), " ")
		if !stale(name) {
			continue
		}
		if pids, err := exec.Command("ip", "netns", "pids", name).Output(); err == nil {
			for _, f := range strings.Fields(string(pids)) {
				if pid, err := strconv.Atoi(f); err == nil {
					syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		if err := ip("netns", "del", name); err != nil {
			t.Logf("leftover of an earlier run: %v", err)
		}
	}
}

// stale reports whether name is one a netLab makes for a process that no
// longer runs.
func stale(name string) bool {
	rest, ok := strings.CutPrefix(name, labPrefix)
	if !ok {
		return false
	}
	digits := rest[:len(rest)-len(strings.TrimLeft(rest, "0123456789"))]
	pid, err := strconv.Atoi(digits)
	if err != nil || pid == os.Getpid() {
		return false
	}
	return syscall.Kill(pid, 0) == syscall.ESRCH
}

// nsDialer dials from inside network namespace ns (as `ip netns add`
// names it), as a client on that side of a cut: the test reaches a member
// whatever its cable does.
func nsDialer(ns string) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		type result struct {
			conn net.Conn
			err  error
		}
		// A goroutine of its own: dialFrom may leave it locked to a thread
		// that must not run anything else.
		done := make(chan result, 1)
		go func() {
			conn, err := dialFrom(ctx, ns, addr)
			done <- result{conn, err}
		}()
		r := <-done
		return r.conn, r.err
	}
}

// dialFrom makes the connection's socket on this goroutine's OS thread
// moved into ns; a socket stays in the namespace it was made in. If the
// thread cannot be moved back it stays locked, and Go ends it with the
// goroutine.
func dialFrom(ctx context.Context, ns, addr string) (net.Conn, error) {
	runtime.LockOSThread()
	home, err := os.Open("/proc/thread-self/ns/net")
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("clustertest: %w", err)
	}
	defer home.Close()
	there, err := os.Open(filepath.Join("/run/netns", ns))
	if err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("clustertest: %w", err)
	}
	defer there.Close()
	if err := unix.Setns(int(there.Fd()), unix.CLONE_NEWNET); err != nil {
		runtime.UnlockOSThread()
		return nil, fmt.Errorf("clustertest: enter namespace %s: %w", ns, err)
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if unix.Setns(int(home.Fd()), unix.CLONE_NEWNET) == nil {
		runtime.UnlockOSThread()
	}
	return conn, err
}
