// Gateway is an example e-government service built on the Tempel SDK: it
// stores documents uploaded over HTTP and timestamps each one with a KSI
// signature, so that anyone can later prove the document existed, in
// exactly these bytes, at the signing time.
//
//	POST /documents                 store the body, answer 201 with JSON
//	                                {id, sha256, signed_at, document, signature}
//	GET  /documents/{id}            the stored document
//	GET  /documents/{id}/signature  its signature (a .ksig file)
//
// Documents never leave the service: only their SHA-256 hashes go to
// Tempel. Concurrent uploads are batched: the first upload opens a round,
// which closes after -round or with -max-batch documents, and the whole
// round is signed with one request (client.SignMany), each document still
// getting its own signature. A busy registry thus costs the timestamping
// service a request per round, not per document. At most -queue uploads
// wait for a round; more are refused at once with 503 and Retry-After.
//
// A document whose signature cannot be obtained is removed and the upload
// fails with 503: the service never answers for an untimestamped record.
//
// Run it against a development server:
//
//	tempel serve &
//	go run ./examples/gateway -server 127.0.0.1:8080 -listen 127.0.0.1:9000 -data /tmp/registry
//	curl --data-binary @decision.pdf http://127.0.0.1:9000/documents
//	curl -o decision.pdf.ksig http://127.0.0.1:9000/documents/ID/signature
//	tempel verify decision.pdf
//
// Several -server flags make the SDK send each request to all of them and
// take the first valid answer.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/tempel-ksi/tempel/client"
)

// Defaults of the flags.
const (
	defaultRound    = 100 * time.Millisecond
	defaultMaxBatch = 1000
	defaultQueue    = 10_000
	defaultMaxDoc   = 32 << 20
	// roundsInFlight bounds the rounds being signed at once: a round
	// waits for the calendar's next second, so a few overlap under load.
	roundsInFlight = 4
)

// servers is the repeatable -server flag.
type servers []string

func (s *servers) String() string { return strings.Join(*s, ",") }
func (s *servers) Set(v string) error {
	for _, p := range strings.Split(v, ",") {
		if p = strings.TrimSpace(p); p != "" {
			*s = append(*s, p)
		}
	}
	return nil
}

type config struct {
	listen, dir     string
	servers         servers
	login, key      string
	round           time.Duration
	maxBatch, queue int
	maxDoc          int64
	timeout         time.Duration
}

func main() {
	var cfg config
	flag.StringVar(&cfg.listen, "listen", "127.0.0.1:9000", "`ADDR` to serve HTTP on")
	flag.StringVar(&cfg.dir, "data", "gateway-data", "`DIR` for documents and signatures")
	flag.Var(&cfg.servers, "server", "Tempel server `ADDR` (repeatable; default 127.0.0.1:8080)")
	flag.StringVar(&cfg.login, "user", os.Getenv("TEMPEL_USER"), "`LOGIN` at the Tempel server (default $TEMPEL_USER)")
	flag.DurationVar(&cfg.round, "round", defaultRound, "longest a round collects documents")
	flag.IntVar(&cfg.maxBatch, "max-batch", defaultMaxBatch, "most documents in one round")
	flag.IntVar(&cfg.queue, "queue", defaultQueue, "most uploads waiting for a round; more get 503")
	flag.Int64Var(&cfg.maxDoc, "max-document", defaultMaxDoc, "largest document accepted, in bytes")
	flag.DurationVar(&cfg.timeout, "timeout", 30*time.Second, "longest an upload waits for its signature")
	flag.Parse()
	cfg.key = os.Getenv("TEMPEL_KEY") // never a flag: command lines are visible in ps
	if len(cfg.servers) == 0 {
		cfg.servers = servers{"127.0.0.1:8080"}
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if err := run(cfg, log); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}

func run(cfg config, log *slog.Logger) error {
	if err := os.MkdirAll(cfg.dir, 0o750); err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	c, err := client.New(client.Config{Endpoints: cfg.servers, Login: cfg.login, Key: cfg.key, MachineID: "gateway"})
	if err != nil {
		return fmt.Errorf("gateway: %w", err)
	}
	defer c.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	h, _, done := newGateway(ctx, c, cfg, log)
	defer done()
	srv := &http.Server{Addr: cfg.listen, Handler: h, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), cfg.timeout)
		defer cancel()
		srv.Shutdown(sctx)
	}()
	log.Info("gateway listening", "addr", cfg.listen, "data", cfg.dir, "servers", cfg.servers)
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("gateway: %w", err)
	}
	return nil
}

// newGateway returns the service's handler, batching its signing through
// c until ctx ends, and its batcher; done stops the batcher and waits
// for it.
func newGateway(ctx context.Context, c *client.Client, cfg config, log *slog.Logger) (http.Handler, *batcher, func()) {
	b := newBatcher(c.SignMany, cfg.round, cfg.maxBatch, cfg.queue, roundsInFlight)
	ctx, cancel := context.WithCancel(ctx)
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		b.run(ctx)
	}()
	s := &store{dir: cfg.dir, maxSize: cfg.maxDoc, signer: b, timeout: cfg.timeout, log: log}
	return s.routes(), b, func() { cancel(); <-stopped }
}
