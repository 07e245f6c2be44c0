package cli

import (
	"crypto/tls"
	"encoding/json"
	"fmt"
	"os"
	"runtime/debug"
	"runtime/pprof"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/bench"
	"github.com/tempel-ksi/tempel/client"
)

func benchCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "bench",
		Usage: "drive signing load at a server and report the rate and latency",
		Description: "Sends signing requests as fast as the server answers, for --duration, and\n" +
			"reports signatures per second and latency percentiles. Run it in its own\n" +
			"process against `tempel serve` (loopback only: it is a load test).",
		Subcommands: []*ucli.Command{benchBaselineCommand()},
		Flags: append([]ucli.Flag{
			&ucli.StringFlag{Name: "server", Value: defaultServer, Usage: "server `ADDR`: HOST:PORT or https://HOST:PORT (TLS)", EnvVars: []string{"TEMPEL_SERVER"}},
			tlsCAFlag(),
			&ucli.StringFlag{Name: "mode", Value: bench.ModeUnary, Usage: "unary (one gRPC call per signature), stream (the streaming API), batch (streaming, many per message), ping (unary gRPC health checks: the cost of a call with no work), rest (POST /v1/sign, JSON, over HTTP/1.1; HTTP 429 is a refusal), pdu (KSI PDU v2 aggregator requests, one per PDU, POST /gt-signingservice over HTTP/1.1; status 0x106 is a refusal) or rfc3161 (POST /tsa beside a plain RFC 3161 responder and native signing, one after the other)"},
			&ucli.IntFlag{Name: "concurrency", Aliases: []string{"c"}, Value: 64, Usage: "unary, ping, rest, pdu without --rate: concurrent callers (each starts its next call when the last is answered); stream, batch: streams"},
			&ucli.IntFlag{Name: "window", Value: 8192, Usage: "stream: requests in flight per stream"},
			&ucli.DurationFlag{Name: "duration", Aliases: []string{"d"}, Value: 10 * time.Second, Usage: "how long to measure, after the warm-up"},
			&ucli.DurationFlag{Name: "warmup", Value: 3 * time.Second, Usage: "how long to send before measuring (fills the pipeline; not counted)"},
			&ucli.Float64Flag{Name: "rate", Usage: "unary, ping, batch, rest, pdu: send this many signatures per second in total on a fixed schedule (open loop; latency from the scheduled time) instead of as fast as answers come back"},
			&ucli.BoolFlag{Name: "full-signatures", Usage: "batch: have the server send complete signatures instead of the shared-round form (which the generator assembles, as the Go client does)"},
			&ucli.StringFlag{Name: "client", Value: bench.ClientLean, Usage: "unary, ping: lean (HTTP/2 frames written directly: the generator's own cost stays small) or grpc (gRPC-Go's client, which costs more CPU per call than the server)"},
			&ucli.IntFlag{Name: "conns", Value: bench.DefaultConns, Usage: "unary, ping with the lean client: connections to open"},
			&ucli.IntFlag{Name: "http-conns", Value: bench.DefaultHTTPConns, Usage: "rest, pdu: HTTP/1.1 connections at most (a request holds one until it is answered, about a second; more requests wait in the generator, and the wait counts in their latency from the schedule; the server refuses connections beyond its --max-conns)"},
			&ucli.StringFlag{Name: "user", EnvVars: []string{"TEMPEL_USER"}, Usage: "login (if the server has a users file); pdu: the PDUs' login id (anon, the development user, when empty)"},
			&ucli.StringFlag{Name: "key", EnvVars: []string{"TEMPEL_KEY"}, Usage: "key for --user; pdu: the PDUs' HMAC key (SHA-256; anon with the development user)"},
			&ucli.BoolFlag{Name: "json", Usage: "print the result as JSON"},
			&ucli.StringFlag{Name: "cpuprofile", Usage: "write the load generator's CPU profile to `FILE` (to tell its cost from the server's)"},
		}, rfc3161Flags()...),
		Action: runBench,
	}
}

func runBench(c *ucli.Context) error {
	cfg, err := benchConfig(c)
	if err != nil {
		return err
	}
	if f, ok := c.App.ErrWriter.(*os.File); ok && fileIsTerminal(f) && !c.Bool("json") {
		start := time.Now()
		cfg.Progress = func(done int64) {
			el := time.Since(start)
			fmt.Fprintf(f, "\r  %6.1fs / %s  %10d signed  %9.0f/s", el.Seconds(), cfg.Duration, done, float64(done)/el.Seconds())
		}
		defer fmt.Fprintln(f)
	}
	if path := c.String("cpuprofile"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			return inputErrorf("%v", err)
		}
		defer f.Close()
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}
	if os.Getenv("GOGC") == "" {
		// The generator holds tens of thousands of calls in flight;
		// collecting less often keeps it from being what is measured.
		debug.SetGCPercent(gcPercent)
	}
	if cfg.Mode == modeRFC3161 {
		return runBenchRFC3161(c, cfg)
	}
	res, err := bench.Run(c.Context, cfg)
	if res != nil {
		// Also when every request failed: a run the server refused whole
		// still has its counts and the refusals' timing.
		if c.Bool("json") {
			json.NewEncoder(c.App.Writer).Encode(res)
		} else {
			fmt.Fprintln(c.App.Writer, res)
		}
	}
	if err != nil {
		return inputErrorf("%v (is `tempel serve` running at %s?)", err, cfg.Server)
	}
	return nil
}

// benchConfig is the load the flags ask for.
func benchConfig(c *ucli.Context) (bench.Config, error) {
	mode := c.String("mode")
	switch mode {
	case bench.ModeUnary, bench.ModeStream, bench.ModeBatch, bench.ModePing, bench.ModeREST, bench.ModePDU, modeRFC3161:
	default:
		return bench.Config{}, usageErrorf("--mode %q: want unary, stream, batch, ping, rest, pdu or rfc3161", mode)
	}
	cfg := bench.Config{Server: c.String("server"), Mode: mode, Concurrency: c.Int("concurrency"), Window: c.Int("window"),
		Duration: c.Duration("duration"), Warmup: c.Duration("warmup"), Login: c.String("user"), Key: c.String("key"), FullSignatures: c.Bool("full-signatures"), Rate: c.Float64("rate"),
		Client: c.String("client"), Conns: c.Int("conns"), HTTPConns: c.Int("http-conns")}
	target, useTLS, err := client.ParseEndpoint(cfg.Server)
	if err != nil {
		return cfg, usageErrorf("--server: %s", strings.TrimPrefix(err.Error(), "client: "))
	}
	cfg.Server = target
	if useTLS {
		if cfg.TLS, err = tlsConfigFrom(c.StringSlice(flagTLSCA)); err != nil {
			return cfg, err
		}
		if cfg.TLS == nil {
			cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		}
	}
	if cfg.HTTPConns < 1 {
		return cfg, usageErrorf("--http-conns %d: must be at least 1", cfg.HTTPConns)
	}
	if cfg.Client != bench.ClientLean && cfg.Client != bench.ClientGRPC {
		return cfg, usageErrorf("--client %q: want lean or grpc", cfg.Client)
	}
	return cfg, nil
}

// fileIsTerminal reports whether f is a terminal (a character device), where
// a progress line helps instead of cluttering a log.
func fileIsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
