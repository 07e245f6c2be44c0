// Package node assembles a Tempel server from its parts: the calendar
// (store, second loop, publisher, extender), the aggregator and the
// listeners, by role. `tempel serve` is a thin layer over it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/pki"
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

	// Calendar.
	PublishEvery time.Duration
	Grace        time.Duration // 0: DefaultGrace(Role)
	PublicURL    string        // base URL clients reach this node at (for the publications file header)
	Keys         pki.Files

	// Aggregator.
	Upstream      string // gRPC address of the parent (role aggregator)
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

	UsersFile string
	// Pprof serves /debug/pprof/ (profiling; keep off in production).
	Pprof  bool
	Logger *slog.Logger
}

// Node is a running Tempel server.
type Node struct {
	cfg     Config
	log     *slog.Logger
	reg     *prometheus.Registry
	users   *server.Users
	keys    *pki.Set
	keysNew bool
	store   *calendar.Store
	cal     *calendar.Service
	pub     *calendar.Publisher
	agg     *aggregator.Engine
	gc      *gcGate // nil when GC is off
	upConn  *grpc.ClientConn
	metrics *requestMetrics
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
		cfg.Name = "tempel"
	}
	if cfg.PublishEvery == 0 {
		cfg.PublishEvery = 24 * time.Hour
	}
	n := &Node{cfg: cfg, log: cfg.Logger, reg: prometheus.NewRegistry()}
	n.reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.metrics = newRequestMetrics(n.reg)
	if cfg.UsersFile != "" {
		u, err := server.LoadUsers(cfg.UsersFile)
		if err != nil {
			return nil, err
		}
		n.users = u
	} else {
		n.users = server.DevUsers()
	}
	switch cfg.Role {
	case RoleAll, RoleCalendar:
		if err := n.openCalendar(); err != nil {
			n.Close()
			return nil, err
		}
	case RoleAggregator:
		if cfg.Upstream == "" {
			return nil, errors.New("role aggregator needs --upstream ADDR (the parent's gRPC address)")
		}
	default:
		return nil, fmt.Errorf("unknown role %q (want all, calendar or aggregator)", cfg.Role)
	}
	if cfg.Role == RoleAll || cfg.Role == RoleAggregator {
		if err := n.openAggregator(); err != nil {
			n.Close()
			return nil, err
		}
	}
	return n, nil
}

func (n *Node) openCalendar() error {
	cfg := n.cfg
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return err
	}
	var err error
	if cfg.Keys.CalendarCert != "" {
		n.keys, err = pki.LoadFiles(cfg.Keys)
	} else {
		n.keys, n.keysNew, err = pki.LoadOrInit(filepath.Join(cfg.DataDir, "keys"), pki.InitOptions{})
	}
	if err != nil {
		return fmt.Errorf("keys: %w", err)
	}
	if n.keysNew {
		n.log.Info("created a development PKI", "dir", filepath.Join(cfg.DataDir, "keys"), "trust_root", n.keys.RootPath)
	}
	n.store, err = calendar.OpenStore(filepath.Join(cfg.DataDir, "calendar"), calendar.StoreOptions{Logger: n.log})
	if err != nil {
		return err
	}
	grace := cfg.Grace
	if grace == 0 {
		grace = DefaultGrace(cfg.Role)
	}
	// With role all, the in-process aggregator is the calendar's only
	// client, and its rounds end on second boundaries.
	n.cal, err = calendar.NewService(calendar.ServiceConfig{Store: n.store, Signer: n.keys, Grace: grace,
		CloseEarly: cfg.Role == RoleAll, Logger: n.log, Metrics: calendar.NewMetrics(n.reg)})
	if err != nil {
		return err
	}
	n.pub, err = calendar.NewPublisher(calendar.PublisherConfig{Store: n.store, Signer: n.keys, Period: cfg.PublishEvery,
		RepositoryURI: cfg.PublicURL + "/publications.bin", Logger: n.log})
	return err
}

func (n *Node) openAggregator() error {
	cfg := n.cfg
	var up aggregator.Upstream
	if cfg.Role == RoleAll {
		up = localCalendar{cal: n.cal, name: cfg.Name}
	} else {
		conn, err := grpc.NewClient(cfg.Upstream, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return fmt.Errorf("upstream %s: %w", cfg.Upstream, err)
		}
		n.upConn = conn
		login := cfg.UpstreamLogin
		if login == "" {
			login = cfg.Name
		}
		up = aggregator.NewGRPCUpstream(conn, login, cfg.UpstreamKey)
	}
	acfg := aggregator.Config{Upstream: up, Period: cfg.RoundPeriod, MaxLevel: byte(min(cfg.MaxLevel, 255)),
		Quota: cfg.Quota, MaxQueue: cfg.MaxQueue, Logger: n.log, Metrics: aggregator.NewMetrics(n.reg),
		Budget: aggregator.NewBudget(requestBudget(cfg.MaxMemory))}
	if n.gc = processGCGate(); n.gc != nil {
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
	if n.cal != nil {
		wg.Add(2)
		go func() {
			defer wg.Done()
			// A failed calendar stops answering; Ready reports why and
			// the node keeps serving health, metrics and verification.
			if err := n.cal.Run(svcCtx); err != nil {
				n.log.Error("calendar stopped", "err", err)
			}
		}()
		go func() { defer wg.Done(); n.pub.Run(svcCtx) }()
	}
	var aggWG sync.WaitGroup
	aggCtx, stopAgg := context.WithCancel(context.WithoutCancel(ctx))
	if n.agg != nil {
		aggWG.Add(1)
		go func() { defer aggWG.Done(); n.agg.Run(aggCtx) }()
		if n.gc != nil {
			aggWG.Add(1)
			go func() { defer aggWG.Done(); n.gc.run(aggCtx) }()
		}
		aggWG.Add(1)
		go func() { defer aggWG.Done(); n.returnMemory(aggCtx) }()
	}
	serr := server.Serve(ctx, ln, g, h, server.Options{ShutdownGrace: 10 * time.Second, Logger: n.log})
	// Order matters: the aggregator's last round still needs the calendar.
	stopAgg()
	aggWG.Wait()
	stopSvcs()
	wg.Wait()
	return serr
}

// Close releases the node's resources.
func (n *Node) Close() error {
	if n.upConn != nil {
		n.upConn.Close()
	}
	if n.store != nil {
		return n.store.Close()
	}
	return nil
}

// ready reports whether the node answers requests.
func (n *Node) ready() error {
	if n.cal != nil {
		if err := n.cal.Ready(); err != nil {
			return fmt.Errorf("calendar: %w", err)
		}
	}
	return n.overloaded()
}

// DefaultGrace is the calendar's grace period when none is configured. With
// role all, every root reaches the calendar through the in-process
// aggregator, whose rounds reserve their place in the second as they close
// (calendar.Slot): the grace only has to cover a round timer firing late.
// With role calendar it covers remote aggregators' rounds in transit.
func DefaultGrace(role string) time.Duration {
	if role == RoleAll {
		return 20 * time.Millisecond
	}
	return 50 * time.Millisecond
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
