package node

import (
	"cmp"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/internal/raftnode"
)

// A node with Config.Cluster set is one member of a replicated calendar
// (docs/design/replication.md): its calendar appends the seconds the
// cluster's raft log commits, raft messages travel on the node's own
// gRPC port, and only the leader takes roots.

// A calendar member keeps more than a day of seconds in its raft log
// behind each snapshot (a second is one entry of about 100 bytes, more
// with roots): a member down for a day catches up from the log, applying
// each second's entry; one down longer, or wiped, is sent the snapshot
// and fetches the calendar's leaves from a peer (calendar/catchup.go).
const (
	ClusterSnapshotEvery = 100_000
	ClusterKeepEntries   = 90_000
)

// ParseCluster reads a member list "1=ADDR1,2=ADDR2,3=ADDR3".
func ParseCluster(s string) (map[uint64]string, error) {
	out := map[uint64]string{}
	for _, part := range strings.Split(s, ",") {
		id, addr, ok := strings.Cut(strings.TrimSpace(part), "=")
		n, err := strconv.ParseUint(id, 10, 64)
		if !ok || err != nil || n == 0 || addr == "" {
			return nil, fmt.Errorf("cluster member %q: want ID=ADDR with ID a number from 1", part)
		}
		if _, dup := out[n]; dup {
			return nil, fmt.Errorf("cluster member %d given twice", n)
		}
		out[n] = addr
	}
	return out, nil
}

// raftLog is the calendar's view of the member's raft node. The
// calendar service is built before the node (the node applies to it),
// so n is set once the node has started; until then nothing leads.
type raftLog struct{ n *raftnode.Node }

func (l *raftLog) Propose(ctx context.Context, data []byte) error {
	if l.n == nil {
		return raftnode.ErrStopped
	}
	return l.n.Propose(ctx, data)
}

// Leading: the leader with a quorum that has applied everything
// committed, so its calendar holds every second anyone may have
// answered (raft commits an empty entry at the start of each term).
func (l *raftLog) Leading() bool {
	if l.n == nil {
		return false
	}
	st := l.n.Status()
	return st.IsLeader && st.HasQuorum && st.Applied >= st.Commit
}

func (l *raftLog) Leader() string {
	if l.n == nil {
		return ""
	}
	st := l.n.Status()
	switch {
	case st.Leader == 0:
		return ""
	case st.LeaderAddr != "":
		return fmt.Sprintf("member %d at %s", st.Leader, st.LeaderAddr)
	}
	return fmt.Sprintf("member %d", st.Leader)
}

// calendarMachine is the calendar service as the raft member's state
// machine: its restores fetch from the member's peers.
type calendarMachine struct{ *calendar.Service }

var (
	_ raftnode.PeerRestorer = calendarMachine{}
	_ raftnode.FetchServer  = calendarMachine{}
	_ raftnode.Flusher      = calendarMachine{}
)

func (m calendarMachine) RestoreFrom(ctx context.Context, index uint64, data []byte, peers raftnode.Fetcher) error {
	return m.Service.RestoreFrom(ctx, index, data, peers)
}

// startRaft starts the member's raft node over DATA-DIR/raft, applying
// to the calendar service, and serves its transport on the node's gRPC
// server.
func (n *Node) startRaft(l *raftLog) error {
	cfg := n.cfg
	dial, err := n.peerDial()
	if err != nil {
		return err
	}
	if err := checkBootstrap(cfg, n.store); err != nil {
		return err
	}
	tr := raftnode.NewGRPCTransport(raftnode.GRPCOptions{DialOptions: dial, Logger: n.log})
	rn, err := raftnode.Start(raftnode.Config{ID: cfg.NodeID, Peers: cfg.Cluster, Join: cfg.Join, Dir: filepath.Join(cfg.DataDir, "raft"),
		Logger: n.log, StateMachine: calendarMachine{n.cal}, Transport: tr, SnapshotEvery: cmp.Or(cfg.RaftSnapshotEvery, ClusterSnapshotEvery), KeepEntries: cmp.Or(cfg.RaftKeepEntries, ClusterKeepEntries)})
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	l.n = rn
	n.raft, n.raftLog = rn, l
	n.closers = append(n.closers, rn.Stop)
	n.h.grpc = append(n.h.grpc, func(g *grpc.Server) { raftnode.RegisterServer(g, rn) })
	n.h.routes = append(n.h.routes, route{"GET /v1/cluster", http.HandlerFunc(n.serveCluster)})
	n.h.routes = append(n.h.routes, n.membershipRoutes()...)
	n.h.calLoops = append(n.h.calLoops, n.promoteLearners)
	n.registerRaftMetrics()
	return nil
}

// checkBootstrap refuses to bootstrap a new cluster log next to a
// calendar that already has seconds: the member was in a cluster before
// and lost its raft log, and a fresh log could vote again in a term it
// voted in. It must rejoin as a learner (remove, add, --join).
func checkBootstrap(cfg Config, store *calendar.Store) error {
	if cfg.Join {
		return nil
	}
	entries, err := os.ReadDir(filepath.Join(cfg.DataDir, "raft"))
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("cluster: %w", err)
	}
	if _, last, ok := store.Head(); ok && len(entries) == 0 {
		return fmt.Errorf("cluster: the calendar in %s holds seconds up to %d but there is no raft log: this member lost its log. "+
			"Rejoin it: 'tempel cluster remove %d' and 'tempel cluster add %d ADDR' at any member, then start it with --join", cfg.DataDir, last, cfg.NodeID, cfg.NodeID)
	}
	return nil
}

// peerDial is how a member reaches the others: with the node's TLS
// settings, trusting the node's own certificate's roots.
func (n *Node) peerDial() ([]grpc.DialOption, error) {
	t := n.cfg.TLS
	creds := n.memberDialCreds()
	if !t.Enabled() {
		return append(creds, grpc.WithTransportCredentials(insecure.NewCredentials())), nil
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if n.keys != nil && n.keys.RootPath != "" {
		pool, err := pki.LoadCertPool(append([]string{n.keys.RootPath}, t.UpstreamCAFiles...)...)
		if err != nil {
			return nil, fmt.Errorf("cluster: %w", err)
		}
		c.RootCAs = pool
	}
	return append(creds, grpc.WithTransportCredentials(credentials.NewTLS(c))), nil
}

// ClusterStatus is GET /v1/cluster: one member's view of the cluster
// (Members only on the leader). `tempel cluster status` reads it.
type ClusterStatus struct {
	ID            uint64          `json:"id"`
	Leader        uint64          `json:"leader"`
	LeaderAddr    string          `json:"leader_addr,omitempty"`
	Term          uint64          `json:"term"`
	Commit        uint64          `json:"commit"`
	Applied       uint64          `json:"applied"`
	AppliedSecond uint64          `json:"applied_second"`
	IsLeader      bool            `json:"is_leader"`
	HasQuorum     bool            `json:"has_quorum"`
	LeaderChanges uint64          `json:"leader_changes"`
	Members       []ClusterMember `json:"members,omitempty"`
}

// ClusterMember is the leader's view of one member.
type ClusterMember struct {
	ID      uint64 `json:"id"`
	Learner bool   `json:"learner,omitempty"`
	Addr    string `json:"addr"`
	Match   uint64 `json:"match"`
	Lag     uint64 `json:"lag"`
	State   string `json:"state"`
	Active  bool   `json:"recent_active"`
}

func (n *Node) clusterStatus() ClusterStatus {
	st := n.raft.Status()
	_, last, _ := n.store.Head()
	out := ClusterStatus{ID: st.ID, Leader: st.Leader, LeaderAddr: st.LeaderAddr, Term: st.Term, Commit: st.Commit,
		Applied: st.Applied, AppliedSecond: last, IsLeader: st.IsLeader, HasQuorum: st.HasQuorum, LeaderChanges: st.LeaderChanges}
	for id, m := range st.Members {
		out.Members = append(out.Members, ClusterMember{ID: id, Learner: m.Learner, Addr: m.Addr, Match: m.Match, Lag: st.Commit - min(m.Match, st.Commit),
			State: m.State, Active: m.RecentActive})
	}
	sort.Slice(out.Members, func(i, j int) bool { return out.Members[i].ID < out.Members[j].ID })
	return out
}

func (n *Node) serveCluster(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(n.clusterStatus())
}

// registerRaftMetrics exports the member's raft state.
func (n *Node) registerRaftMetrics() {
	gauge := func(name, help string, f func(raftnode.Status) float64) {
		n.reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help},
			func() float64 { return f(n.raft.Status()) }))
	}
	gauge("tempel_raft_term", "Raft term of this member.", func(s raftnode.Status) float64 { return float64(s.Term) })
	gauge("tempel_raft_is_leader", "1 when this member leads the cluster.", func(s raftnode.Status) float64 { return b2f(s.IsLeader) })
	gauge("tempel_raft_has_quorum", "1 when this member leads and heard from a majority within an election timeout.",
		func(s raftnode.Status) float64 { return b2f(s.IsLeader && s.HasQuorum) })
	gauge("tempel_raft_commit_index", "Last raft index known committed.", func(s raftnode.Status) float64 { return float64(s.Commit) })
	gauge("tempel_raft_applied_index", "Last raft index applied to the calendar.", func(s raftnode.Status) float64 { return float64(s.Applied) })
	gauge("tempel_raft_apply_lag", "Committed raft entries not yet applied.", func(s raftnode.Status) float64 { return float64(s.Commit - min(s.Applied, s.Commit)) })
	counter := func(name, help string, f func(raftnode.Status) uint64) {
		n.reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help},
			func() float64 { return float64(f(n.raft.Status())) }))
	}
	counter("tempel_raft_leader_changes_total", "Leaders this member saw elected.", func(s raftnode.Status) uint64 { return s.LeaderChanges })
	counter("tempel_raft_snapshots_restored_total", "Snapshots restored into this member's calendar.", func(s raftnode.Status) uint64 { return s.Restores })
	counter("tempel_raft_snapshots_sent_total", "Snapshots this member (as leader) delivered to members behind its compacted log.",
		func(s raftnode.Status) uint64 { return s.SnapshotsSent })
	counter("tempel_raft_snapshots_failed_total", "Snapshots this member (as leader) could not deliver.", func(s raftnode.Status) uint64 { return s.SnapshotsFailed })
	counter("tempel_raft_fetches_served_total", "Fetches of calendar seconds or publications this member answered in full for members restoring a snapshot.",
		func(s raftnode.Status) uint64 { return s.FetchesServed })
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

var _ calendar.ReplicatedLog = (*raftLog)(nil)

// calendarReady is why the node's calendar does not answer, nil when it
// does. A cluster member also needs the cluster: a follower with role
// all forwards its rounds to the leader, so it needs a leader; with role
// calendar it must lead itself (remote aggregators go to the leader).
func (n *Node) calendarReady() error {
	err := n.cal.Ready() // it says "calendar: " itself
	if err != nil || n.raft == nil {
		return err
	}
	if err := n.raft.Err(); err != nil {
		return fmt.Errorf("cluster: this member stopped: %w", err)
	}
	st := n.raft.Status()
	switch {
	case st.Restoring:
		return errors.New("cluster: restoring the calendar from the cluster's snapshot (fetching from peers)")
	case n.raftLog.Leading():
		return nil
	case n.cfg.Role == RoleCalendar:
		if st.LeaderAddr != "" && st.Leader != st.ID {
			return fmt.Errorf("%w: the leader is member %d at %s", calendar.ErrNotLeader, st.Leader, st.LeaderAddr)
		}
		return fmt.Errorf("%w: no leader with a quorum", calendar.ErrNotLeader)
	case st.Leader == 0:
		return errors.New("cluster: no leader (election in progress, or no quorum)")
	case st.Leader == st.ID:
		return errors.New("cluster: this member leads but has no quorum or is still applying the log")
	}
	return nil
}
