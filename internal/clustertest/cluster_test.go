// Package clustertest runs a replicated calendar of real `tempel serve`
// processes on loopback and breaks it: SIGKILL, SIGSTOP, a wiped member.
// After each run every answered signature must match every member's
// calendar, and the members' calendars must be identical.
package clustertest

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/client"
	"github.com/tempel-ksi/tempel/internal/node"
	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/verifier"
)

var tempelBin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "tempel-clustertest")
		if err != nil {
			panic(err)
		}
		defer os.RemoveAll(dir)
		tempelBin = filepath.Join(dir, "tempel")
		// The members run without the race detector: they are the system
		// under test, not the test's own code.
		out, err := exec.Command("go", "build", "-o", tempelBin, "../../cmd/tempel").CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build tempel: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// member is one `tempel serve` process of the cluster.
type member struct {
	// login and key authenticate the test's HTTP calls (none in
	// development mode).
	login, key string
	id         int
	addr       string
	dir        string
	cmd        *exec.Cmd
	done       chan struct{}
	// netns is the network namespace the member runs in (empty: the
	// test's own); web, when set, reaches it over https (nil: plaintext
	// through httpc).
	netns string
	web   *http.Client
}

type cluster struct {
	t       *testing.T
	members []*member
	spec    string
	args    []string // added to every member's serve command
	login   string   // the signing load's credentials (none in development mode)
	key     string
	root    string      // keys init --members: ROOT/ca/root.pem, ROOT/nodeN
	tls     *tls.Config // the signing load's TLS, for members with web set
}

func newCluster(t *testing.T, n int, args ...string) *cluster {
	t.Helper()
	c := &cluster{t: t, args: args}
	root := t.TempDir()
	// One root and publisher, a calendar key per member; every member's
	// publications file carries all members' calendar certificates.
	c.root = root
	c.tempel("keys", "init", "--data-dir", root, "--members", fmt.Sprint(n))
	var parts []string
	for i := 1; i <= n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := l.Addr().String()
		l.Close()
		m := &member{id: i, addr: addr, dir: filepath.Join(root, fmt.Sprintf("node%d", i))}
		c.members = append(c.members, m)
		parts = append(parts, fmt.Sprintf("%d=%s", i, addr))
	}
	c.spec = strings.Join(parts, ",")
	for _, m := range c.members {
		c.start(m)
	}
	t.Cleanup(func() {
		for _, m := range c.members {
			c.kill(m)
		}
		if t.Failed() {
			for _, m := range c.members {
				b, _ := os.ReadFile(m.dir + ".log")
				if keep := os.Getenv("TEMPEL_CLUSTER_LOGS"); keep != "" {
					os.WriteFile(filepath.Join(keep, fmt.Sprintf("%s-member%d.log", t.Name(), m.id)), b, 0o600)
				}
				lines := strings.Split(strings.TrimSpace(string(b)), "\n")
				t.Logf("member %d, last lines of its log:\n%s", m.id, strings.Join(lines[max(0, len(lines)-40):], "\n"))
			}
		}
	})
	return c
}

func (c *cluster) start(m *member, extra ...string) {
	c.t.Helper()
	logf, err := os.OpenFile(m.dir+".log", os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		c.t.Fatal(err)
	}
	cmd := exec.Command(tempelBin, "serve", "--data-dir", m.dir, "--listen", m.addr, "--node-id", fmt.Sprint(m.id),
		"--cluster", c.spec, "--publish-every", "5s", "--max-memory", "256MiB")
	cmd.Args = append(append(cmd.Args, c.args...), extra...)
	if os.Getenv("TEMPEL_CLUSTER_DEBUG") != "" {
		cmd.Args = append(cmd.Args, "--log-level", "debug")
	}
	if m.netns != "" {
		cmd = exec.Command("ip", append([]string{"netns", "exec", m.netns}, cmd.Args...)...)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	m.cmd, m.done = cmd, make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(m.done) }()
}

func (c *cluster) kill(m *member) {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGCONT) // a stopped process dies only once it runs
	m.cmd.Process.Kill()
	<-m.done
	m.cmd = nil
}

// stop ends a member gracefully (SIGTERM), so its store can be read.
func (c *cluster) stop(m *member) {
	if m.cmd == nil {
		return
	}
	m.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-m.done:
	case <-time.After(30 * time.Second):
		c.t.Errorf("member %d did not stop within 30s of SIGTERM", m.id)
		c.kill(m)
	}
	m.cmd = nil
}

// tempel runs a client command of the real binary and returns its output.
func (c *cluster) tempel(args ...string) string {
	c.t.Helper()
	out, err := exec.Command(tempelBin, args...).CombinedOutput()
	if err != nil {
		c.t.Fatalf("tempel %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// status is a member's GET /v1/cluster.
type status = node.ClusterStatus

var httpc = &http.Client{Timeout: 2 * time.Second}

// url is path at the member, and client the HTTP client that reaches it.
func (m *member) url(path string) string {
	if m.web != nil {
		return "https://" + m.addr + path
	}
	return "http://" + m.addr + path
}

func (m *member) client() *http.Client {
	if m.web != nil {
		return m.web
	}
	return httpc
}

// endpoint is the member's address for the signing SDK.
func (m *member) endpoint() string {
	if m.web != nil {
		return "https://" + m.addr
	}
	return m.addr
}

func (m *member) status() (status, error) {
	var st status
	req, err := http.NewRequest(http.MethodGet, m.url("/v1/cluster"), nil)
	if err != nil {
		return st, err
	}
	if m.login != "" {
		req.SetBasicAuth(m.login, m.key)
	}
	resp, err := m.client().Do(req)
	if err != nil {
		return st, err
	}
	defer resp.Body.Close()
	return st, json.NewDecoder(resp.Body).Decode(&st)
}

func (m *member) ready() bool {
	resp, err := m.client().Get(m.url("/readyz"))
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

func (c *cluster) running() []*member {
	var out []*member
	for _, m := range c.members {
		if m.cmd != nil {
			out = append(out, m)
		}
	}
	return out
}

// waitFor polls cond until it holds or the deadline passes.
func (c *cluster) waitFor(what string, d time.Duration, cond func() bool) {
	c.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			for _, m := range c.running() {
				st, err := m.status()
				c.t.Logf("member %d: %+v %v", m.id, st, err)
			}
			c.t.Fatalf("%s: not within %v", what, d)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leader waits for a running member that leads with a quorum and answers.
func (c *cluster) leader(d time.Duration) *member {
	c.t.Helper()
	var l *member
	c.waitFor("a leader with a quorum", d, func() bool {
		for _, m := range c.running() {
			if st, err := m.status(); err == nil && st.IsLeader && st.HasQuorum && m.ready() {
				l = m
				return true
			}
		}
		return false
	})
	return l
}

// converged waits until every running member has applied what the
// leader committed and holds the same last second.
func (c *cluster) converged(d time.Duration) {
	c.t.Helper()
	c.waitFor("members applying the same log", d, func() bool {
		var want status
		for i, m := range c.running() {
			st, err := m.status()
			if err != nil || st.Applied < st.Commit {
				return false
			}
			if i == 0 {
				want = st
			} else if st.Commit != want.Commit || st.AppliedSecond != want.AppliedSecond {
				return false
			}
		}
		return true
	})
}

// signed is one answer of the signing load.
type signed struct {
	at  time.Time
	doc ksi.Imprint
	sig *ksi.Signature
	err error
}

// load signs continuously through all members (one after the other on
// failure, as the SDK's failover does) until stopped.
type load struct {
	mu      sync.Mutex
	answers []signed
	stop    context.CancelFunc
	wg      sync.WaitGroup
}

func startLoad(t *testing.T, c *cluster, workers int) *load {
	var eps []string
	for _, m := range c.members {
		eps = append(eps, m.endpoint())
	}
	return startLoadWith(t, client.Config{Endpoints: eps, Parallel: 1, Timeout: 4 * time.Second, Retries: 1, Login: c.login, Key: c.key, TLS: c.tls}, workers)
}

// startLoadWith signs continuously with cfg's client until stopped.
func startLoadWith(t *testing.T, cfg client.Config, workers int) *load {
	cl, err := client.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	l := &load{stop: cancel}
	for w := range workers {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			for i := 0; ctx.Err() == nil; i++ {
				sum := sha256.Sum256(fmt.Appendf(nil, "worker %d doc %d", w, i))
				doc := append(ksi.Imprint{byte(ksi.SHA2_256)}, sum[:]...)
				sig, err := cl.Sign(ctx, doc)
				if ctx.Err() != nil {
					return
				}
				l.mu.Lock()
				l.answers = append(l.answers, signed{at: time.Now(), doc: doc, sig: sig, err: err})
				l.mu.Unlock()
				if err != nil {
					time.Sleep(20 * time.Millisecond)
				}
			}
		}()
	}
	t.Cleanup(func() { cancel(); l.wg.Wait(); cl.Close() })
	return l
}

func (l *load) end() []signed {
	l.stop()
	l.wg.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.answers
}

// firstOKAfter is when the first signature answered after t arrived.
func (l *load) firstOKAfter(t time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, a := range l.answers {
		if a.err == nil && a.at.After(t) {
			return a.at, true
		}
	}
	return time.Time{}, false
}

// waitSigned waits for a signature answered after t and returns when.
func (c *cluster) waitSigned(l *load, t time.Time, d time.Duration) time.Duration {
	c.t.Helper()
	var at time.Time
	c.waitFor("a signature after the fault", d, func() bool {
		var ok bool
		at, ok = l.firstOKAfter(t)
		return ok
	})
	return at.Sub(t)
}

// check extends every answered signature (a sample of maxExtended when
// there are more) through each running member to its newest publication
// and verifies it publication-based with that member's file, then stops
// every member and compares: the calendars are identical (each holds
// every second the cluster applied before the stop, and members agree on
// every second they both hold), without gaps, and every answered
// signature is internally consistent and its calendar root is every
// member's root after its second.
func (c *cluster) check(answers []signed) {
	c.t.Helper()
	c.converged(20 * time.Second)
	st, err := c.running()[0].status()
	if err != nil {
		c.t.Fatal(err)
	}
	applied := st.AppliedSecond
	var good []signed
	for _, a := range answers {
		if a.err == nil {
			good = append(good, a)
		}
	}
	if len(good) > 0 {
		c.waitPublished(newestSecond(good), publishedWait)
	}
	running := c.running()
	pubfiles := c.publicationsFiles()
	if len(good) > 0 {
		c.extendEach(good, running, pubfiles)
	}
	for _, m := range c.members {
		if m.cmd != nil {
			m.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	for _, m := range c.members {
		c.stop(m)
	}
	var stores []*calendar.Store
	for _, m := range c.members {
		st, err := calendar.OpenStore(filepath.Join(m.dir, "calendar"), calendar.StoreOptions{ReadOnly: true})
		if err != nil {
			c.t.Fatalf("member %d: %v", m.id, err)
		}
		defer st.Close()
		stores = append(stores, st)
	}
	first, last, ok := stores[0].Head()
	if !ok {
		c.t.Fatal("member 1 has an empty calendar")
	}
	for i, st := range stores {
		f, l, _ := st.Head()
		if f != first || l < applied {
			c.t.Fatalf("member %d holds seconds %d..%d; the cluster had applied %d..%d", i+1, f, l, first, applied)
		}
		last = max(last, l)
	}
	for t := first; t <= last; t++ {
		var want calendarRoot
		for i, st := range stores {
			if _, l, _ := st.Head(); l < t {
				continue
			}
			got, err := st.Root(t)
			if err != nil {
				c.t.Fatalf("member %d, second %d: %v", i+1, t, err)
			}
			if want.root == nil {
				want = calendarRoot{i + 1, got}
			} else if !got.Equal(want.root) {
				c.t.Fatalf("second %d: member %d has root %s, member %d %s", t, i+1, got, want.member, want.root)
			}
		}
	}
	answered, failed := 0, 0
	for _, a := range answers {
		if a.err != nil {
			failed++
			continue
		}
		answered++
		// Key-based with every member's publications file: whichever
		// member's key signed the root, every file names it.
		for i, pf := range pubfiles {
			rep := verifier.Verify(context.Background(), a.sig, verifier.KeyBased, verifier.Options{Document: a.doc, PublicationsFile: pf})
			if err := rep.Err(); err != nil {
				c.t.Fatalf("answered signature does not verify key-based with member %d's publications file: %v", running[i].id, err)
			}
		}
		var h ksi.Hasher
		root, err := a.sig.CalendarChain.Output(&h)
		if err != nil {
			c.t.Fatal(err)
		}
		sec := a.sig.CalendarChain.PublicationTime
		if sec > applied {
			c.t.Fatalf("signature of second %d answered; the cluster had applied only up to %d", sec, applied)
		}
		for i, st := range stores {
			got, err := st.Root(sec)
			if err != nil || !got.Equal(root) {
				c.t.Fatalf("signature of second %d has root %s; member %d has %s (%v)", sec, root, i+1, got, err)
			}
		}
	}
	c.t.Logf("calendars identical over %d seconds (%d applied by all); %d signatures answered and checked, %d calls failed", last-first+1, applied-first+1, answered, failed)
	if answered == 0 {
		c.t.Fatal("no signature was answered")
	}
}

// publicationsFiles fetches every running member's publications file and
// checks it against the shared trust root and constraint.
func (c *cluster) publicationsFiles() []*ksi.PublicationsFile {
	c.t.Helper()
	roots, err := verifier.LoadCertificates(filepath.Join(c.root, "ca", "root.pem"))
	if err != nil {
		c.t.Fatal(err)
	}
	pool := x509.NewCertPool()
	for _, r := range roots {
		pool.AddCert(r)
	}
	cn, err := verifier.ParseConstraint("E=publications@tempel.test")
	if err != nil {
		c.t.Fatal(err)
	}
	// The log replicates publications, so every member serves the same
	// bytes once each has applied the same entries.
	var raws [][]byte
	c.waitFor("every member serving the same publications file", 15*time.Second, func() bool {
		raws = raws[:0]
		for _, m := range c.running() {
			resp, err := m.client().Get(m.url("/publications.bin"))
			if err != nil {
				c.t.Fatal(err)
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				c.t.Fatal(err)
			}
			raws = append(raws, b)
		}
		for _, b := range raws[1:] {
			if !bytes.Equal(b, raws[0]) {
				return false
			}
		}
		return true
	})
	var out []*ksi.PublicationsFile
	for i, b := range raws {
		m := c.running()[i]
		pf, err := ksi.ParsePublicationsFile(b)
		if err != nil {
			c.t.Fatalf("member %d's publications file: %v", m.id, err)
		}
		if err := verifier.VerifyPublicationsFile(pf, verifier.Trust{Roots: pool, Constraints: []verifier.Constraint{cn}, Time: time.Now()}); err != nil {
			c.t.Fatalf("member %d's publications file: %v", m.id, err)
		}
		out = append(out, pf)
	}
	return out
}

type calendarRoot struct {
	member int
	root   ksi.Imprint
}

func durations(ds []time.Duration) string {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s) == 0 {
		return "none"
	}
	return fmt.Sprintf("n=%d min %v median %v max %v", len(s), s[0].Round(time.Millisecond), s[len(s)/2].Round(time.Millisecond), s[len(s)-1].Round(time.Millisecond))
}

func skipShort(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a cluster of real processes")
	}
	if runtime.GOOS != "linux" {
		t.Skip("signals and loopback processes as on Linux")
	}
}
