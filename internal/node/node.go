// Package node assembles a Tempel server from its parts: the calendar
// (store, second loop, publisher, extender), the aggregator and the
// listeners, by role. `tempel serve` is a thin layer over it.
package node

import (
	"context"
	"crypto/tls"
	"encoding/asn1"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/internal/raftnode"
	"github.com/tempel-ksi/tempel/internal/schedule"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
)

// Roles a node can run.
const (
	RoleAll        = "all"        // calendar and aggregator in one process
	RoleCalendar   = "calendar"   // the calendar alone; its children are aggregators
	RoleAggregator = "aggregator" // an aggregator whose upstream is another node
)

// Config is a node's configuration (flags, environment or file).
type Config struct {
	Role    string
	DataDir string
	Listen  string
	// Name is the client id this node gives itself upstream.
	Name string
	// NodeID and Cluster make the node member NodeID of a replicated
	// calendar whose members (id → the address each listens on,
	// including this one) are Cluster (cluster.go); empty Cluster: a
	// single calendar.
	NodeID  uint64
	Cluster map[uint64]string
	// Join starts a member added with `tempel cluster add` on an empty
	// data directory: it does not bootstrap the cluster but waits for
	// the leader to send it the log. ClusterAdmin is the login allowed
	// to change members (DefaultClusterAdmin when empty).
	Join         bool
	ClusterAdmin string
	// ClusterLogin and ClusterKey are the credentials members use with
	// each other (memberauth.go): DefaultClusterLogin when empty; no key
	// in development mode.
	ClusterLogin string
	ClusterKey   string
	// TSACert and TSAKey, when set, are the RFC 3161 TSA's certificate
	// (chained to the trust root) and key, in place of DATA-DIR/keys/tsa.pem;
	// TSAPolicies are the policies it serves, the first by default
	// (tsp.DefaultPolicy when none).
	TSACert, TSAKey string
	TSAPolicies     []asn1.ObjectIdentifier
	// TSAQCStatement puts the qualified time-stamp statement in every
	// token (tsp.Signer.QCStatement).
	TSAQCStatement bool
	// RaftSnapshotEvery and RaftKeepEntries: the member snapshots its
	// calendar every RaftSnapshotEvery applied entries and keeps
	// RaftKeepEntries of the log behind it (ClusterSnapshotEvery and
	// ClusterKeepEntries when 0).
	RaftSnapshotEvery, RaftKeepEntries uint64

	// Calendar.
	PublishEvery time.Duration
	// WatermarkFile is where the calendar records what it has answered
	// (default DATA-DIR/watermark); on another volume it also catches a
	// data directory restored from an older copy.
	WatermarkFile string
	// MinFreeBytes is the free space below which the calendar stops
	// appending until space is freed (default calendar.DefaultMinFreeBytes).
	MinFreeBytes uint64
	Grace        time.Duration // 0: DefaultGrace(Role)
	PublicURL    string        // base URL clients reach this node at (for the publications file header)
	Keys         pki.Files

	// Aggregator.
	Upstream      string // the parent (role aggregator): https://HOST:PORT (TLS), HOST:PORT or http://HOST:PORT
	UpstreamLogin string
	UpstreamKey   string
	RoundPeriod   time.Duration
	MaxLevel      int
	Quota         int
	MaxQueue      int
	// MaxMemory is the memory the node plans for (DefaultMaxMemory when
	// 0): waiting requests may hold 1/RequestBudgetShare of it.
	MaxMemory int64
	// StreamSendTimeout ends a signing stream whose answers make no
	// progress towards its client for this long (DefaultStreamSendTimeout
	// when 0).
	StreamSendTimeout time.Duration
	// StreamShare is the part of the budget of waiting requests that one
	// signing stream's requests may hold, as a divisor
	// (DefaultStreamShare when 0).
	StreamShare int64

	// PDUAllowWeakHMAC accepts KSI PDUs whose HMAC is made with an
	// algorithm weaker than SHA-256 (SHA-1, RIPEMD-160, SHA3-224).
	PDUAllowWeakHMAC bool
	// DebugListen is the debug listener's address with Pprof
	// (DefaultDebugListen when empty); it must be a loopback address.
	DebugListen string
	// TLS: see TLSConfig (zero: plaintext).
	TLS TLSConfig
	// Connections: open client connections, and the read, write and idle
	// timeouts (see server.Options; 0: the server's defaults).
	MaxConns                               int
	ReadTimeout, WriteTimeout, IdleTimeout time.Duration
	// KSITCPListen is the address of the ksi+tcp listener (KSI PDU v2
	// over raw TCP; empty: none), KSITCPMaxInFlight the PDUs one of its
	// connections may have in flight (0: server.DefaultKSITCPMaxInFlight).
	KSITCPListen      string
	KSITCPMaxInFlight int

	UsersFile string
	// Now is the clock of the calendar and the aggregator (default
	// time.Now); tests step it.
	Now func() time.Time
	// NTPServer, when set, is an NTP server (HOST or HOST:PORT) the
	// calendar's clock is checked against every NTPInterval: while it is
	// off by more than MaxClockOffset, or unchecked for NTPStale, the node
	// does not sign (clockcheck.go; ntpcheck's defaults when 0).
	NTPServer                             string
	NTPInterval, MaxClockOffset, NTPStale time.Duration
	// Pprof serves /debug/pprof/ and a copy of /metrics on DebugListen,
	// never on Listen (profiling; keep off in production).
	Pprof bool
	// GRPCReflection registers the gRPC server reflection services
	// (off by default); they need credentials, as signing does.
	GRPCReflection bool
	Logger         *slog.Logger
}

// Node is a running Tempel server.
type Node struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	grpcm   *grpcprom.ServerMetrics // the standard gRPC server metrics (grpcmetrics.go)
	users   *server.Users
	keys    *pki.Set
	keysNew bool
	store   *calendar.Store
	mark    *calendar.Watermark
	cal     *calendar.Service
	raft    *raftnode.Node // nil without a cluster
	raftLog *raftLog       // the calendar's view of raft; nil without a cluster
	pub     *calendar.Publisher
	agg     *aggregator.Engine
	gc      *gcGate // nil when GC is off
	metrics *requestMetrics
	auth    *server.Authenticator
	blocked *blockedSends // streams whose send waits for their client
	debugLn net.Listener  // nil without --pprof
	tls     *tls.Config   // nil: plaintext
	tlsCert string
	// h is what the node's role serves (role.go).
	h handlers
	// closers release what New opened, last opened first.
	closers []func() error
	// The ksi+tcp listener until Run serves it, and the connection count
	// it shares.
	tcpLn   net.Listener
	tcpAddr net.Addr
	conns   *server.ConnCount
}

// New opens the node's state and builds its parts; Run serves them.
func New(cfg Config) (*Node, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Role == "" {
		cfg.Role = RoleAll
	}
	if cfg.Name == "" {
		cfg.Name = DefaultName
	}
	if cfg.PublishEvery == 0 {
		cfg.PublishEvery = DefaultPublishEvery
	}
	cfg = withConnDefaults(cfg)
	n := &Node{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry(), blocked: newBlockedSends(), conns: new(server.ConnCount)}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.metrics = newRequestMetrics(n.reg)
	n.grpcm = newGRPCMetrics(n.reg)
	registerBuildInfo(n.reg)
	if cfg.UsersFile != "" {
		u, err := server.LoadUsers(cfg.UsersFile)
		if err != nil {
			return nil, err
		}
		n.users = u
	} else {
		n.users = server.DevUsers()
	}
	n.auth = n.newAuthenticator()
	if err := n.openDebug(); err != nil {
		return nil, err
	}
	parts, err := n.roleParts()
	if err != nil {
		n.Close()
		return nil, err
	}
	for _, open := range parts {
		if err := open(); err != nil {
			n.Close()
			return nil, err
		}
	}
	if err := n.withClockCheck(); err != nil {
		n.Close()
		return nil, err
	}
	if n.tls, err = n.serverTLS(); err != nil {
		n.Close()
		return nil, err
	}
	if err := n.listenKSITCP(); err != nil {
		n.Close()
		return nil, err
	}
	n.registerOpsMetrics()
	if n.users.Dev() {
		// Said once the node is built, so that a refused start says one thing.
		n.log.Warn("development mode: no --users file; calls without credentials are accepted as client id anonymous, KSI PDU clients may use user anon / key anon")
	}
	return n, nil
}

func (n *Node) openCalendar() error {
	cfg := n.cfg
	n.closers = append(n.closers, n.closeCalendarFiles)
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	var err error
	if cfg.Keys.CalendarCert != "" {
		n.keys, err = pki.LoadFiles(cfg.Keys)
	} else if cfg.Keys.MemberCerts != "" {
		err = errors.New("--member-certs goes with the operator's keys (--calendar-cert and the others); a development data directory reads DATA-DIR/keys/members.pem")
	} else {
		n.keys, n.keysNew, err = pki.LoadOrInit(filepath.Join(cfg.DataDir, "keys"), pki.InitOptions{TLSHosts: pki.DevTLSHosts})
	}
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if n.keysNew {
		n.log.Info("created a development PKI", "dir", filepath.Join(cfg.DataDir, "keys"), "trust_root", n.keys.RootPath)
	}
	n.store, n.mark, err = OpenCalendar(cfg.DataDir, cfg.WatermarkFile, calendar.StoreOptions{Logger: n.log, MinFreeBytes: cfg.MinFreeBytes})
	if err != nil {
		return err
	}
	rules := scheduleRules(cfg)
	scfg := calendar.ServiceConfig{Store: n.store, Watermark: n.mark, Signer: n.keys, Now: cfg.Now,
		Grace: rules.Grace, MaxHold: rules.MaxHold, CloseEarly: rules.CloseEarly, Logger: n.log, Metrics: calendar.NewMetrics(n.reg)}
	var rlog *raftLog
	if len(cfg.Cluster) > 0 {
		rlog = &raftLog{}
		scfg.Log = rlog
	}
	if n.cal, err = calendar.NewService(scfg); err != nil {
		return err
	}
	pcfg := calendar.PublisherConfig{Store: n.store, Watermark: n.mark, Signer: n.keys, Period: cfg.PublishEvery, Now: cfg.Now,
		RepositoryURI: cfg.PublicURL + "/publications.bin", Logger: n.log}
	if rlog != nil {
		pcfg.Log = rlog
	}
	if n.pub, err = calendar.NewPublisher(pcfg); err != nil {
		return err
	}
	if rlog != nil {
		// The log applies publications too: the publisher must exist
		// before the log starts.
		n.cal.SetPublisher(n.pub)
		return n.startRaft(rlog)
	}
	return nil
}

// dialUpstream connects to the parent node (role aggregator).
func (n *Node) dialUpstream() (aggregator.Upstream, error) {
	cfg := n.cfg
	target, opts, err := upstreamDial(cfg)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Upstream, err)
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("upstream %s: %w", cfg.Upstream, err)
	}
	n.closers = append(n.closers, conn.Close)
	// Without a key the parent must be in development mode, which
	// accepts no credentials but refuses a login without its key.
	login := cfg.UpstreamLogin
	if login == "" && cfg.UpstreamKey != "" {
		login = cfg.Name
	}
	return aggregator.NewGRPCUpstream(conn, login, cfg.UpstreamKey), nil
}

// openAggregator makes the aggregator engine, whose rounds go to up.
func (n *Node) openAggregator(up aggregator.Upstream) error {
	cfg := n.cfg
	acfg := aggregator.Config{Upstream: up, Period: cfg.RoundPeriod, Now: cfg.Now, MaxLevel: byte(min(cfg.MaxLevel, 255)),
		Quota: cfg.Quota, MaxQueue: cfg.MaxQueue, Logger: n.log, Metrics: aggregator.NewMetrics(n.reg),
		Budget: aggregator.NewBudget(requestBudget(cfg.MaxMemory))}
	if n.gc = newGCGate(gcGateConfig{Now: cfg.Now}); n.gc != nil {
		acfg.Answering = n.gc.answering
	}
	var err error
	n.agg, err = aggregator.New(acfg)
	return err
}

// Keys returns the node's key set (nil for an aggregator-only node).
func (n *Node) Keys() *pki.Set { return n.keys }

// KeysCreated reports whether New created a development PKI.
func (n *Node) KeysCreated() bool { return n.keysNew }

// DevMode reports whether the node accepts unauthenticated calls.
func (n *Node) DevMode() bool { return n.users.Dev() }

// Run serves on ln until ctx is cancelled, then shuts down gracefully:
// queued requests are answered or failed, the store is closed.
func (n *Node) Run(ctx context.Context, ln net.Listener) error {
	g := n.grpcServer()
	h, err := n.httpHandler(ctx)
	if err != nil {
		return err
	}
	var wg sync.WaitGroup
	svcCtx, stopSvcs := context.WithCancel(context.WithoutCancel(ctx))
	goLoops(svcCtx, &wg, n.h.calLoops)
	var aggWG sync.WaitGroup
	aggCtx, stopAgg := context.WithCancel(context.WithoutCancel(ctx))
	goLoops(aggCtx, &aggWG, n.h.loops)
	if n.gc != nil {
		aggWG.Add(1)
		go func() { defer aggWG.Done(); n.gc.run(aggCtx) }()
	}
	stopDebug := n.serveDebug()
	waitKSITCP := n.serveKSITCP(ctx)
	serr := server.Serve(ctx, ln, g, h, n.serveOptions())
	waitKSITCP()
	stopDebug()
	// Order matters: the aggregator's last round still needs the calendar.
	stopAgg()
	aggWG.Wait()
	stopSvcs()
	wg.Wait()
	return serr
}

// goLoops runs each loop in a goroutine of wg until ctx ends.
func goLoops(ctx context.Context, wg *sync.WaitGroup, loops []func(context.Context)) {
	for _, loop := range loops {
		wg.Add(1)
		go func() { defer wg.Done(); loop(ctx) }()
	}
}

// Close releases the node's resources; it returns the store's error.
func (n *Node) Close() error {
	if n.debugLn != nil {
		n.debugLn.Close()
	}
	if n.tcpLn != nil {
		n.tcpLn.Close()
	}
	var err error
	for i := len(n.closers) - 1; i >= 0; i-- {
		err = errors.Join(err, n.closers[i]())
	}
	return err
}

// WatermarkPath is the watermark file of a data directory, unless one is
// configured elsewhere.
func WatermarkPath(dataDir, configured string) string {
	if configured != "" {
		return configured
	}
	return filepath.Join(dataDir, "watermark")
}

// OpenCalendar opens the calendar store of a data directory and its
// watermark, and refuses (with one line saying what is missing and what
// to do) a store that has less than the watermark says was answered.
func OpenCalendar(dataDir, watermarkFile string, opts calendar.StoreOptions) (*calendar.Store, *calendar.Watermark, error) {
	// Check read-only first: opening for writing replays the WAL into a
	// new table and removes it, and a refused store should stay as it
	// was found, for whoever tries to repair it.
	if !calendar.StoreExists(filepath.Join(dataDir, "calendar")) {
		// No store yet: only a new calendar may create one.
		if err := checkNoStore(dataDir, watermarkFile); err != nil {
			return nil, nil, err
		}
	} else {
		ro := opts
		ro.ReadOnly = true
		st, w, _, err := checkedCalendar(dataDir, watermarkFile, ro)
		if err != nil {
			return nil, nil, err
		}
		if w != nil {
			w.Close()
		}
		st.Close()
	}
	st, w, _, err := checkedCalendar(dataDir, watermarkFile, opts)
	return st, w, err
}

// checkedCalendar opens store and watermark and compares them.
func checkedCalendar(dataDir, watermarkFile string, opts calendar.StoreOptions) (*calendar.Store, *calendar.Watermark, bool, error) {
	st, w, found, err := openCalendarFiles(dataDir, watermarkFile, opts)
	if err != nil {
		return nil, nil, false, err
	}
	var m calendar.Mark
	if found {
		m = w.Mark()
	}
	if err := st.CheckMark(m, found); err != nil {
		if w != nil {
			w.Close()
		}
		st.Close()
		var loss *calendar.LossError
		if errors.As(err, &loss) {
			loss.MarkPath = WatermarkPath(dataDir, watermarkFile)
		}
		return nil, nil, false, refuseLoss(err, dataDir)
	}
	return st, w, found, nil
}

// checkNoStore refuses a data directory without a store whose watermark
// says seconds were answered, before a new empty store is made there.
func checkNoStore(dataDir, watermarkFile string) error {
	w, found, err := calendar.OpenWatermark(WatermarkPath(dataDir, watermarkFile), false)
	if err != nil {
		return watermarkError(err, dataDir)
	}
	if !found {
		return nil
	}
	m := w.Mark()
	w.Close()
	return refuseLoss(calendar.CheckMarkNoStore(m), dataDir)
}

// refuseLoss says what to do about a store behind its watermark.
func refuseLoss(err error, dataDir string) error {
	if err == nil {
		return nil
	}
	restore := "Restore the data directory from a newer copy"
	if loss := (*calendar.LossError)(nil); errors.As(err, &loss) && loss.NoMark {
		restore = "Put the watermark file back (or give its place with --watermark)"
	}
	return fmt.Errorf("%w; refusing to start. %s, or accept the loss with "+
		"'tempel calendar accept-loss --data-dir %s' (signatures of the lost seconds will no longer verify)", err, restore, dataDir)
}

// watermarkError says what to do about a watermark that cannot be read.
func watermarkError(err error, dataDir string) error {
	return fmt.Errorf("%w (if the file was damaged, move it away and accept what cannot be checked with 'tempel calendar accept-loss --data-dir %s')", err, dataDir)
}

// openCalendarFiles opens store and watermark without comparing them.
func openCalendarFiles(dataDir, watermarkFile string, opts calendar.StoreOptions) (*calendar.Store, *calendar.Watermark, bool, error) {
	st, err := calendar.OpenStore(filepath.Join(dataDir, "calendar"), opts)
	if err != nil {
		return nil, nil, false, err
	}
	_, _, has := st.Head()
	w, found, err := calendar.OpenWatermark(WatermarkPath(dataDir, watermarkFile), !has && !opts.ReadOnly)
	if err != nil {
		st.Close()
		return nil, nil, false, watermarkError(err, dataDir)
	}
	return st, w, found, nil
}

// AcceptLoss records an operator's acceptance of lost calendar history in
// a data directory (see calendar.AcceptLoss).
func AcceptLoss(dataDir, watermarkFile, reason string, now time.Time) (*calendar.LossRecord, error) {
	st, w, found, err := openCalendarFiles(dataDir, watermarkFile, calendar.StoreOptions{Logger: discardLogger()})
	if err != nil {
		return nil, err
	}
	defer st.Close()
	if w == nil {
		// No mark at all: the acceptance makes one from the store.
		if w, _, err = calendar.OpenWatermark(WatermarkPath(dataDir, watermarkFile), true); err != nil {
			return nil, err
		}
	}
	defer w.Close()
	return calendar.AcceptLoss(st, w, found, reason, now)
}

// ready reports whether the node answers requests.
func (n *Node) ready() error {
	cal := n.h.calReady()
	over := n.overloaded()
	switch {
	case cal != nil && over != nil:
		// Both, in one line: an operator who clears one is not
		// surprised by the other.
		return fmt.Errorf("%w; %w", cal, over)
	case cal != nil:
		return cal
	}
	return over
}

// DefaultGrace is the calendar's grace period when none is configured
// (schedule.Defaults).
func DefaultGrace(role string) time.Duration { return schedule.Defaults(role == RoleAll).Grace }

// scheduleRules are the rules of the calendar's second schedule: with
// role all, the in-process aggregator is the calendar's only client, its
// rounds reserve their place in the second as they close (calendar.Slot)
// and end on second boundaries.
func scheduleRules(cfg Config) schedule.Rules {
	r := schedule.Defaults(cfg.Role == RoleAll)
	if cfg.Grace != 0 {
		r.Grace = cfg.Grace
	}
	return r
}

// localCalendar is the in-process calendar as the aggregator's upstream.
// Each round reserves its place in the calendar's second when it closes.
type localCalendar struct {
	cal  *calendar.Service
	name string
}

func (l localCalendar) Sign(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
	return l.cal.Sign(ctx, root, level, l.name)
}

func (l localCalendar) Reserve() (aggregator.Upstream, func()) {
	slot := l.cal.Reserve()
	return aggregator.UpstreamFunc(func(ctx context.Context, root ksi.Imprint, level byte) ([]byte, error) {
		return slot.Sign(ctx, root, level, l.name)
	}), slot.Release
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
