package client

import (
	"context"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// Metadata keys sent with every call.
const (
	authorizationKey = "authorization"
	machineIDKey     = "x-tempel-machine-id"
)

// Defaults of [Config].
const (
	DefaultTimeout        = 10 * time.Second
	DefaultMaxOutstanding = 10_000
)

// Config configures a [Client].
type Config struct {
	// Endpoints are addresses of Tempel gRPC servers. A unary call (Sign,
	// SignMany, Extend, CalendarHead, the publications file) is sent to
	// all of them at once, or to the first Parallel; the first answer
	// that passes the client's checks wins and the other attempts are
	// cancelled, so a slow, hung or lying endpoint costs nothing while
	// another answers well. A [Stream] uses one endpoint. The endpoints
	// must lead to one calendar (aggregators of one calendar, or its
	// replicas): an extender's chain is checked per endpoint for its
	// form and times, but against the signature only once it has won.
	// "https://HOST:PORT" speaks TLS (see TLS), "HOST:PORT" and
	// "http://HOST:PORT" plaintext, which suits loopback and development
	// only ([ParseEndpoint]).
	Endpoints []string
	// Parallel bounds the endpoints a call is sent to at once: Parallel
	// of Endpoints, in order from the one that answered the last call
	// (the first at the start); when one fails for good, the next one not
	// yet asked takes its place. 0 (the default) or more than
	// len(Endpoints) means all; 1 asks one endpoint after the other.
	Parallel int
	// Retries is how often a call is repeated at one endpoint after a
	// failure that retrying may mend: unavailable, overloaded
	// (ResourceExhausted) or no answer within Timeout (default 2, at most
	// MaxRetries; negative: none). Refused requests or credentials, and
	// answers that fail the client's checks, are never retried. A call
	// therefore takes at most (Retries+1)·Timeout plus the pauses.
	Retries int
	// RetryBackoff is the pause before the first retry (default 100ms);
	// it doubles per retry up to MaxRetryBackoff, and a random part of up
	// to half of it is dropped (jitter).
	RetryBackoff time.Duration
	// TLS configures the https:// endpoints: RootCAs are the roots
	// trusted for the server's certificate (nil: the system roots),
	// Certificates a client certificate if the server asks for one. Nil
	// means the system roots and no client certificate. TLS 1.2 is the
	// least accepted.
	TLS *tls.Config
	// Login and Key are sent as Basic credentials when Login is set. The
	// key is never logged; Config's String and LogValue redact it.
	Login, Key string
	// MachineID names the calling machine; the gateway records it in the
	// signature's metadata when it is set.
	MachineID string
	// Timeout bounds one attempt at one endpoint (default 10s). A signing
	// call waits for the server's aggregation round and calendar second,
	// so keep it well above one second.
	Timeout time.Duration
	// DialOptions are added to each endpoint's dial options after the
	// transport credentials its scheme selects, so transport credentials
	// given here replace those.
	DialOptions []grpc.DialOption
	// MaxOutstanding bounds the requests a [Stream] has sent and not yet
	// seen answered (default 10,000); Stream.Submit blocks at the bound.
	MaxOutstanding int
	// PublicationsTrust says which publications files [Client.Publications]
	// believes, and how often it fetches the file again.
	PublicationsTrust PublicationsTrust
}

// String describes the configuration without the key.
func (c Config) String() string {
	key := ""
	if c.Key != "" {
		key = "REDACTED"
	}
	return fmt.Sprintf("{Endpoints:%v Parallel:%d Retries:%d Login:%q Key:%s MachineID:%q Timeout:%s MaxOutstanding:%d}",
		c.Endpoints, c.Parallel, c.Retries, c.Login, key, c.MachineID, c.Timeout, c.MaxOutstanding)
}

// GoString is String for %#v, which would print the key otherwise.
func (c Config) GoString() string { return "client.Config" + c.String() }

// LogValue implements [slog.LogValuer]: the configuration without the key.
func (c Config) LogValue() slog.Value {
	return slog.GroupValue(
		slog.Any("endpoints", c.Endpoints),
		slog.Int("parallel", c.Parallel),
		slog.Int("retries", c.Retries),
		slog.String("login", c.Login),
		slog.String("machine_id", c.MachineID),
		slog.Duration("timeout", c.Timeout),
	)
}

// Client calls Tempel servers. It is safe for concurrent use.
type Client struct {
	cfg   Config
	md    metadata.MD
	conns []*grpc.ClientConn
	// fan is the virtual connection of unary calls ([Client.fanOut]).
	fan *grpc.ClientConn
	// parallel and retries are Config.Parallel and Config.Retries made
	// concrete.
	parallel, retries int
	// preferred is the endpoint that answered last; unary calls and
	// Streams start there.
	preferred atomic.Int32
	pubs      pubCache

	closeOnce sync.Once
	closed    atomic.Bool

	// The RFC 3161 front door's HTTP client ([Client.TimeStamp]), made
	// on its first use.
	tsaOnce sync.Once
	tsaHTTP *http.Client
	tsaURLs []string
	tsaErr  error
}

// New creates a client. It does not connect: connections are made on the
// first call, so New succeeds while every endpoint is down.
func New(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("client: no endpoints")
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.MaxOutstanding <= 0 {
		cfg.MaxOutstanding = DefaultMaxOutstanding
	}
	if cfg.Retries > MaxRetries {
		return nil, fmt.Errorf("client: %d retries, at most %d", cfg.Retries, MaxRetries)
	}
	if cfg.RetryBackoff <= 0 {
		cfg.RetryBackoff = DefaultRetryBackoff
	}
	plain := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}, cfg.DialOptions...)
	secure := append([]grpc.DialOption{grpc.WithTransportCredentials(credentials.NewTLS(tlsConfig(cfg.TLS)))}, cfg.DialOptions...)
	c := &Client{cfg: cfg, md: metadata.MD{}, parallel: cfg.Parallel, retries: cfg.Retries}
	if c.parallel <= 0 || c.parallel > len(cfg.Endpoints) {
		c.parallel = len(cfg.Endpoints)
	}
	switch {
	case cfg.Retries == 0:
		c.retries = DefaultRetries
	case cfg.Retries < 0:
		c.retries = 0
	}
	c.pubs.init(cfg.PublicationsTrust)
	if cfg.Login != "" {
		c.md.Set(authorizationKey, "Basic "+base64.StdEncoding.EncodeToString([]byte(cfg.Login+":"+cfg.Key)))
	}
	if cfg.MachineID != "" {
		c.md.Set(machineIDKey, cfg.MachineID)
	}
	for _, ep := range cfg.Endpoints {
		target, useTLS, err := ParseEndpoint(ep)
		if err != nil {
			c.Close()
			return nil, err
		}
		opts := plain
		if useTLS {
			opts = secure
		}
		cc, err := grpc.NewClient(target, opts...)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("client: endpoint %q: %w", ep, err)
		}
		c.conns = append(c.conns, cc)
	}
	fan, err := c.newFanOut()
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("client: %w", err)
	}
	c.fan = fan
	return c, nil
}

// Close closes the connections. Calls in progress fail.
func (c *Client) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.closed.Store(true)
		for _, cc := range c.conns {
			err = errors.Join(err, cc.Close())
		}
		if c.fan != nil {
			err = errors.Join(err, c.fan.Close())
		}
		c.tsaOnce.Do(func() {}) // no HTTP client made after Close
		if c.tsaHTTP != nil {
			c.tsaHTTP.CloseIdleConnections()
		}
	})
	return err
}

// outgoing adds the credentials to ctx.
func (c *Client) outgoing(ctx context.Context) context.Context {
	if len(c.md) == 0 {
		return ctx
	}
	if md, ok := metadata.FromOutgoingContext(ctx); ok {
		return metadata.NewOutgoingContext(ctx, metadata.Join(md, c.md))
	}
	return metadata.NewOutgoingContext(ctx, c.md)
}

// failover reports whether a [Stream] that failed to open with err may be
// opened at the next endpoint.
func failover(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded:
		return true
	}
	return false
}

// call runs f, one unary RPC, against the endpoints: f is called once,
// with the client's virtual connection, whose interceptor sends the RPC
// to the endpoints and keeps the first valid answer ([Client.fanOut]).
func (c *Client) call(ctx context.Context, op string, f func(ctx context.Context, cc *grpc.ClientConn) error) error {
	return c.callChecked(ctx, op, nil, f)
}

// callChecked is call with one more condition an answer must meet to win.
func (c *Client) callChecked(ctx context.Context, op string, check func(proto.Message) error, f func(ctx context.Context, cc *grpc.ClientConn) error) error {
	if c.closed.Load() {
		return fmt.Errorf("%w: %s", ErrClosed, op)
	}
	return f(withCallInfo(c.outgoing(ctx), callInfo{op: op, check: check}), c.fan)
}

// CalendarHead describes the calendar's range and current root.
type CalendarHead struct {
	First, Last uint64 // first and newest second, POSIX seconds
	Root        ksi.Imprint
}

// CalendarHead returns the newest state of the calendar.
func (c *Client) CalendarHead(ctx context.Context) (*CalendarHead, error) {
	var resp *tempelv1.CalendarHead
	err := c.call(ctx, "calendar head", func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = tempelv1.NewExtenderClient(cc).GetCalendarHead(ctx, &tempelv1.GetCalendarHeadRequest{})
		return err
	})
	if err != nil {
		return nil, err
	}
	root, err := ksi.ParseImprint(resp.Root)
	if err != nil {
		return nil, fmt.Errorf("%w: calendar head: root: %v", ErrBadResponse, err)
	}
	return &CalendarHead{First: resp.FirstTime, Last: resp.LastTime, Root: root}, nil
}

// PublicationsFile returns the server's signed publications file, byte for
// byte. Verify it (verifier.VerifyPublicationsFile) before trusting it, or
// call [Client.Publications], which verifies and caches it.
func (c *Client) PublicationsFile(ctx context.Context) ([]byte, error) {
	var resp *tempelv1.PublicationsFile
	err := c.call(ctx, "publications file", func(ctx context.Context, cc *grpc.ClientConn) (err error) {
		resp, err = tempelv1.NewPublicationsClient(cc).GetPublicationsFile(ctx, &tempelv1.GetPublicationsFileRequest{},
			grpc.MaxCallRecvMsgSize(ksi.MaxPublicationsFileSize+1<<10))
		return err
	})
	if err != nil {
		return nil, err
	}
	return resp.Content, nil
}
