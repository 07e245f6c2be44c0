package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/tempel-ksi/tempel/bench"
)

// `tempel bench --mode rfc3161`: the RFC 3161 front door beside a plain
// responder with the same kind of key, and beside native signing, in one
// run (issue 14's performance targets).

const modeRFC3161 = "rfc3161"

// Values of --baseline besides a key kind.
const (
	baselineSame = "same" // the kind of key the server's TSA has
	baselineNone = "none"
)

// baselineStartTimeout bounds the start of the baseline process: an
// RSA-2048 key is made first.
const baselineStartTimeout = 60 * time.Second

// rfc3161Flags are the flags of --mode rfc3161 (added to bench's).
func rfc3161Flags() []ucli.Flag {
	return []ucli.Flag{
		&ucli.StringFlag{Name: "baseline", Value: baselineSame, Usage: "rfc3161: the plain RFC 3161 responder to compare with, run as a child process on loopback: same (the server's TSA key kind), rsa (RSA-2048), ecdsa (P-256) or none"},
		&ucli.Float64Flag{Name: "unary-rate", Usage: "rfc3161: rate offered to native unary signing (0: 2x --rate, the target ratio; -1: skip)"},
		&ucli.Float64Flag{Name: "stream-rate", Usage: "rfc3161: rate offered to the streaming API, batch mode (0: 20x --rate, the target ratio; -1: skip)"},
		&ucli.IntFlag{Name: "tsa-conns", Value: bench.DefaultTSAConns, Usage: "rfc3161: HTTP/1.1 connections to /tsa at most (a token holds one for its round and second; more requests wait, and the wait counts in their latency)"},
	}
}

// runBenchRFC3161 runs the comparison and prints it.
func runBenchRFC3161(c *ucli.Context, cfg bench.Config) error {
	if cfg.Rate <= 0 {
		return usageErrorf("--mode rfc3161 is an open loop: give --rate (tokens per second offered to the baseline and the front door)")
	}
	if cfg.TSAConns = c.Int("tsa-conns"); cfg.TSAConns < 1 {
		return usageErrorf("--tsa-conns %d: must be at least 1", cfg.TSAConns)
	}
	cc := bench.CompareConfig{Base: cfg,
		UnaryRate: rateOr(c.Float64("unary-rate"), bench.TargetUnary*cfg.Rate), StreamRate: rateOr(c.Float64("stream-rate"), bench.TargetStream*cfg.Rate)}
	kind := c.String("baseline")
	switch kind {
	case baselineSame, baselineNone, bench.KeyRSA, bench.KeyECDSA:
	default:
		return usageErrorf("--baseline %q: want same, rsa, ecdsa or none", kind)
	}
	if kind == baselineSame {
		probe := cfg
		probe.TSAWantKSI = true
		k, err := bench.ProbeTSA(c.Context, probe)
		if err != nil {
			return inputErrorf("%v (is `tempel serve` running at %s?)", err, cfg.Server)
		}
		kind = k
	}
	if kind != baselineNone {
		addr, stop, err := startBaseline(c.Context, kind)
		if err != nil {
			return err
		}
		defer stop()
		cc.Baseline = addr
	}
	res, err := bench.Compare(c.Context, cc)
	if err != nil {
		if res != nil && (res.Baseline != nil || res.FrontDoor != nil) {
			fmt.Fprintln(c.App.Writer, res)
		}
		return inputErrorf("%v", err)
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(res)
	}
	fmt.Fprintln(c.App.Writer, res)
	return nil
}

// rateOr is a rate flag's value: def for 0, none (0) for a negative one.
func rateOr(v, def float64) float64 {
	switch {
	case v == 0:
		return def
	case v < 0:
		return 0
	}
	return v
}

// startBaseline runs `tempel bench tsa-baseline` as a child process, so
// that the baseline has its own cores' share, heap and descriptor limit as
// the server has, and returns its address and a function that stops it.
// The child also exits when its standard input closes, so it does not
// outlive this process.
func startBaseline(ctx context.Context, kind string) (string, func(), error) {
	self, err := os.Executable()
	if err != nil {
		return "", nil, fmt.Errorf("bench: the baseline: %w", err)
	}
	cmd := exec.Command(self, "bench", "tsa-baseline", "--key", kind, "--listen", "127.0.0.1:0", "--exit-on-eof")
	// The same name as this process's (a test binary runs as the
	// command its name says).
	cmd.Args[0] = os.Args[0]
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return "", nil, fmt.Errorf("bench: the baseline: %w", err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return "", nil, fmt.Errorf("bench: the baseline: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return "", nil, fmt.Errorf("bench: the baseline: %w", err)
	}
	stop := func() {
		stdin.Close()
		cmd.Process.Signal(os.Interrupt)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	addr := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(stdout).ReadString('\n')
		addr <- strings.TrimSpace(strings.TrimPrefix(line, "listening "))
		io.Copy(io.Discard, stdout)
	}()
	select {
	case a := <-addr:
		if _, _, err := net.SplitHostPort(a); err != nil {
			stop()
			return "", nil, fmt.Errorf("bench: the baseline did not start (it said %q)", a)
		}
		return a, stop, nil
	case <-time.After(baselineStartTimeout):
	case <-ctx.Done():
	}
	stop()
	return "", nil, errors.New("bench: the baseline did not start in time")
}

// benchBaselineCommand is `tempel bench tsa-baseline`.
func benchBaselineCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "tsa-baseline",
		Usage: "serve a plain RFC 3161 responder (POST /tsa, one key signature per token, no KSI): what --mode rfc3161 compares with",
		Description: "Makes a fresh TSA key and certificate (in memory only), prints\n" +
			"\"listening HOST:PORT\" and answers POST /tsa until interrupted.",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "key", Value: bench.KeyRSA, Usage: "TSA key: rsa (RSA-2048) or ecdsa (P-256)"},
			&ucli.StringFlag{Name: "listen", Value: "127.0.0.1:0", Usage: "`ADDR` to listen on"},
			&ucli.BoolFlag{Name: "exit-on-eof", Usage: "also stop when standard input closes (as when started by tempel bench)", Hidden: true},
		},
		Action: runBenchBaseline,
	}
}

func runBenchBaseline(c *ucli.Context) error {
	b, err := bench.NewBaseline(c.String("key"))
	if err != nil {
		return usageErrorf("%v", err)
	}
	ln, err := net.Listen("tcp", c.String("listen"))
	if err != nil {
		return inputErrorf("%v", err)
	}
	ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
	defer stop()
	if c.Bool("exit-on-eof") {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			stop()
		}()
	}
	fmt.Fprintf(c.App.Writer, "listening %s\n", ln.Addr())
	return bench.ServeBaseline(ctx, ln, b)
}
