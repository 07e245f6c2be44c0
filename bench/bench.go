// Package bench is Tempel's load generator, run by `tempel bench`: it
// signs as fast as a server takes it, through unary gRPC calls, the
// streaming API, REST (ModeREST) or KSI PDUs (ModePDU), or asks the
// RFC 3161 front door for tokens (ModeTSA), and reports the rate, the
// latency distribution and the refusals for load. It checks only the
// first signature of a run or stream, and makes unary calls with its own
// lean HTTP/2 client (h2conn) by default and HTTP/1.1 requests with its
// own lean client (h1pool), so that the generator costs the
// shared machine less than the server it measures. [Compare] runs the
// front door beside a plain RFC 3161 responder ([Baseline]) and native
// signing.
package bench

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/round"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
	"github.com/tempel-ksi/tempel/verifier"
)

// Modes of load.
const (
	ModeUnary  = "unary"
	ModeStream = "stream"
	ModeBatch  = "batch" // the streaming API with many requests per message
	// ModePing makes unary gRPC health checks instead of signing: the
	// cost of a unary call on this machine and transport, with no work.
	ModePing = "ping"
)

// batchSize is the number of requests per message in ModeBatch.
const batchSize = 512

// Config describes one load run.
type Config struct {
	// Server is HOST:PORT; with TLS set it is reached over TLS.
	Server      string
	TLS         *tls.Config
	Mode        string
	Concurrency int           // unary: callers; stream: streams
	Window      int           // stream: requests in flight per stream
	Duration    time.Duration // how long to send, after Warmup
	// Warmup is sent first and not measured: it fills the pipeline (every
	// stream's window at once, the first rounds) before the steady state.
	Warmup     time.Duration
	Login, Key string
	// Rate, if set, is the total number of signatures per second that
	// ModeUnary, ModePing or ModeBatch sends, on a fixed schedule (an open
	// loop: latency counts from each request's scheduled time). Window
	// then only caps a batch stream's memory; with ClientGRPC each unary
	// call gets a goroutine.
	Rate float64
	// FullSignatures makes ModeBatch ask for complete signatures instead
	// of the shared-round form (which it assembles into complete ones).
	FullSignatures bool
	// Client makes ModeUnary and ModePing calls: ClientLean (default) or
	// ClientGRPC.
	Client string
	// Conns is the number of connections of the lean client (default 2).
	Conns int
	// Progress, if set, is called about every 200ms with requests done.
	Progress func(done int64)
	// TSAConns bounds ModeTSA's HTTP/1.1 connections (0: DefaultTSAConns).
	TSAConns int
	// TSAWantKSI makes ModeTSA require a KSI signature in the first token
	// (Tempel's front door); without it the token must have none (the
	// baseline).
	TSAWantKSI bool
	// HTTPConns bounds the HTTP/1.1 connections of ModeREST and ModePDU
	// (0: DefaultHTTPConns).
	HTTPConns int
}

// Result is what a run measured.
type Result struct {
	Mode        string `json:"mode"`
	Concurrency int    `json:"concurrency"`
	Requests    int64  `json:"requests"`
	Errors      int64  `json:"errors"`
	// Refused counts the errors that were the server refusing for load
	// (HTTP 429, KSI status 0x105 or 0x106, gRPC RESOURCE_EXHAUSTED, a
	// new HTTP/1.1 connection closed before any answer: the server's
	// connection limit). Errors and Refused count the requests scheduled
	// after the warm-up, as Requests does; streams' errors are counted
	// whenever they come.
	Refused     int64         `json:"refused,omitempty"`
	FirstError  string        `json:"first_error,omitempty"`
	Elapsed     time.Duration `json:"elapsed_ns"`
	Rate        float64       `json:"signatures_per_second"`
	Offered     float64       `json:"offered_per_second,omitempty"` // open loop (Config.Rate)
	P50         time.Duration `json:"p50_ns"`
	P90         time.Duration `json:"p90_ns"`
	P99         time.Duration `json:"p99_ns"`
	Max         time.Duration `json:"max_ns"`
	BytesPerSig float64       `json:"bytes_per_signature"`
	// Throughput is the answers received during the measured time per
	// second, whenever they were sent: what a server delivers when it is
	// offered more than it can answer, where Rate (counted by send
	// time, answered whenever) shows the offered rate and the latency
	// the backlog.
	Throughput float64 `json:"answered_in_window_per_second"`
	// TSAKey is the kind of key that signed ModeTSA's tokens.
	TSAKey string `json:"tsa_key,omitempty"`
	// Unary calls at a rate also time each call from the moment it left
	// rather than from its scheduled time: when the generator itself
	// falls behind its schedule (overload on a shared machine), P99 holds
	// that lag, P99Sent only the server's answer. RefusedP99 is how soon
	// errors (refusals) came back, from their sending.
	P50Sent    time.Duration `json:"p50_from_send_ns,omitempty"`
	P99Sent    time.Duration `json:"p99_from_send_ns,omitempty"`
	RefusedP99 time.Duration `json:"refused_p99_from_send_ns,omitempty"`
}

func (r *Result) String() string {
	errs := fmt.Sprintf("%d errors", r.Errors)
	if r.Refused > 0 {
		errs += fmt.Sprintf(" (%d refused for load)", r.Refused)
	}
	if r.Offered > 0 {
		// The answers of the window's requests may come long after it when
		// the server (or the generator's connections) fall behind: what
		// came within the window is the rate the server kept up.
		line := fmt.Sprintf("%s x%d at %.0f/s offered: %d signatures sent over %.1fs, answered = %.0f/s (%.0f/s within the window), %s; latency p50 %s p90 %s p99 %s max %s; %.0f bytes/signature",
			r.Mode, r.Concurrency, r.Offered, r.Requests, r.Elapsed.Seconds(), r.Rate, r.Throughput, errs,
			r.P50.Round(time.Millisecond), r.P90.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond), r.BytesPerSig)
		if r.P99Sent > 0 || r.RefusedP99 > 0 {
			line += fmt.Sprintf("; from sending: p50 %s p99 %s, refusals p99 %s",
				r.P50Sent.Round(time.Millisecond), r.P99Sent.Round(time.Millisecond), r.RefusedP99.Round(time.Millisecond))
		}
		return line
	}
	return fmt.Sprintf("%s x%d: %d signatures in %.1fs = %.0f/s, %s; latency p50 %s p90 %s p99 %s max %s; %.0f bytes/signature",
		r.Mode, r.Concurrency, r.Requests, r.Elapsed.Seconds(), r.Rate, errs,
		r.P50.Round(time.Millisecond), r.P90.Round(time.Millisecond), r.P99.Round(time.Millisecond), r.Max.Round(time.Millisecond), r.BytesPerSig)
}

// histogram records latencies in logarithmic buckets (about 1% wide)
// without locks on the hot path beyond one atomic add.
type histogram struct {
	buckets [2048]atomic.Int64
}

const histBase = 1.01

func (h *histogram) add(d time.Duration) {
	us := float64(d.Microseconds())
	i := 0
	if us >= 1 {
		i = int(math.Log(us)/math.Log(histBase)) + 1
	}
	h.buckets[min(i, len(h.buckets)-1)].Add(1)
}

func (h *histogram) quantiles(qs ...float64) []time.Duration {
	var total int64
	for i := range h.buckets {
		total += h.buckets[i].Load()
	}
	out := make([]time.Duration, len(qs))
	if total == 0 {
		return out
	}
	idx := make([]int, len(qs))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return qs[idx[a]] < qs[idx[b]] })
	var seen int64
	k := 0
	for i := range h.buckets {
		seen += h.buckets[i].Load()
		for k < len(idx) && float64(seen) >= qs[idx[k]]*float64(total) {
			us := 0.0
			if i > 0 {
				us = math.Pow(histBase, float64(i))
			}
			out[idx[k]] = time.Duration(us * float64(time.Microsecond))
			k++
		}
	}
	return out
}

// Run drives load at cfg.Server until cfg.Duration has passed.
func Run(ctx context.Context, cfg Config) (*Result, error) {
	if cfg.Concurrency <= 0 {
		cfg.Concurrency = 1
	}
	if cfg.Window <= 0 {
		cfg.Window = 4096
	}
	if cfg.Rate > 0 && cfg.Mode == ModeBatch {
		// A request stays in flight about a second (its round and the
		// calendar's second): room for three seconds of sending, so the
		// window never holds back the schedule.
		cfg.Window = max(cfg.Window, int(3*cfg.Rate/float64(cfg.Concurrency)))
	}
	if cfg.Client == "" {
		cfg.Client = ClientLean
	}
	if cfg.Client != ClientLean && cfg.Client != ClientGRPC {
		return nil, fmt.Errorf("bench: unknown client %q", cfg.Client)
	}
	if cfg.Conns <= 0 {
		cfg.Conns = DefaultConns
	}
	if cfg.TSAConns <= 0 {
		cfg.TSAConns = DefaultTSAConns
	}
	if cfg.HTTPConns <= 0 {
		cfg.HTTPConns = DefaultHTTPConns
	}
	lean := (cfg.Mode == ModeUnary || cfg.Mode == ModePing) && cfg.Client == ClientLean
	tsa := cfg.Mode == ModeTSA || cfg.Mode == ModeREST || cfg.Mode == ModePDU // over HTTP/1.1
	// Several connections: one HTTP/2 connection with tens of thousands
	// of open streams serialises on its writer.
	conns := make([]*grpc.ClientConn, max(1, min(cfg.Concurrency/1000, 16)))
	if lean || tsa {
		conns = nil
	}
	for i := range conns {
		creds := insecure.NewCredentials()
		if cfg.TLS != nil {
			creds = credentials.NewTLS(cfg.TLS)
		}
		c, err := grpc.NewClient(cfg.Server, grpc.WithTransportCredentials(creds),
			grpc.WithInitialWindowSize(64<<20), grpc.WithInitialConnWindowSize(64<<20))
		if err != nil {
			return nil, err
		}
		defer c.Close()
		conns[i] = c
	}
	if cfg.Login != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, "authorization",
			"Basic "+base64.StdEncoding.EncodeToString([]byte(cfg.Login+":"+cfg.Key)))
	}
	r := &run{cfg: cfg}
	runCtx, cancel := context.WithTimeout(ctx, cfg.Warmup+cfg.Duration)
	defer cancel()
	stopProgress := r.progress()
	start := time.Now()
	r.measureFrom = start.Add(cfg.Warmup).UnixNano()
	r.measureTo = start.Add(cfg.Warmup + cfg.Duration).UnixNano()
	var wg sync.WaitGroup
	if lean {
		if err := r.unaryLean(runCtx, ctx); err != nil {
			stopProgress()
			return nil, err
		}
	}
	switch cfg.Mode {
	case ModeTSA:
		r.runTSA(runCtx, ctx)
	case ModeREST:
		r.runREST(runCtx, ctx)
	case ModePDU:
		if err := r.runPDU(runCtx, ctx); err != nil {
			stopProgress()
			return nil, err
		}
	}
	for i := 0; i < cfg.Concurrency && !lean && !tsa; i++ {
		wg.Add(1)
		client := tempelv1.NewSignerClient(conns[i%len(conns)])
		worker := uint64(i)
		go func() {
			defer wg.Done()
			switch cfg.Mode {
			case ModeStream:
				r.stream(runCtx, ctx, client, worker)
			case ModeBatch:
				r.batch(runCtx, ctx, client, worker)
			case ModePing:
				hc := healthpb.NewHealthClient(conns[int(worker)%len(conns)])
				r.unary(runCtx, ctx, worker, func(ctx context.Context, _ uint64) (int, int64, error) {
					_, err := hc.Check(ctx, &healthpb.HealthCheckRequest{})
					return 0, 0, err
				})
			default:
				r.unary(runCtx, ctx, worker, func(ctx context.Context, n uint64) (int, int64, error) {
					resp, err := client.Sign(ctx, &tempelv1.SignRequest{RequestId: n, Hash: hashFor(worker, n)})
					return len(resp.GetSignature()), 0, err
				})
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start) - cfg.Warmup
	stopProgress()
	q := r.hist.quantiles(0.5, 0.9, 0.99, 1)
	res := &Result{Mode: cfg.Mode, Concurrency: cfg.Concurrency, Requests: r.done.Load(), Errors: r.errors.Load(), Refused: r.refused.Load(),
		Elapsed: elapsed, P50: q[0], P90: q[1], P99: q[2], Max: q[3]}
	if e := r.firstErr.Load(); e != nil {
		res.FirstError = e.(string)
	}
	sent := r.sentHist.quantiles(0.5, 0.99)
	res.P50Sent, res.P99Sent = sent[0], sent[1]
	res.RefusedP99 = r.refusedHist.quantiles(0.99)[0]
	if k, ok := r.tsaKey.Load().(string); ok {
		res.TSAKey = k
	}
	res.Rate = float64(res.Requests) / elapsed.Seconds()
	res.Throughput = float64(r.inWindow.Load()) / cfg.Duration.Seconds()
	if cfg.Rate > 0 {
		// Open loop: every measured request was sent within Duration and
		// is counted when answered (the run waits for the last answers).
		res.Offered, res.Elapsed = cfg.Rate, cfg.Duration
		res.Rate = float64(res.Requests) / cfg.Duration.Seconds()
	}
	if res.Requests > 0 {
		res.BytesPerSig = float64(r.bytes.Load()) / float64(res.Requests)
	}
	if res.Requests == 0 && res.Errors > 0 {
		return res, errors.New("bench: every request failed: " + res.FirstError)
	}
	return res, nil
}

type run struct {
	cfg  Config
	hist histogram
	// sentHist and refusedHist time unary calls at a rate from their
	// sending (Result.P99Sent, Result.RefusedP99).
	sentHist, refusedHist histogram
	done                  atomic.Int64
	errors                atomic.Int64
	refused               atomic.Int64 // of errors, the refusals for load
	bytes                 atomic.Int64
	firstErr              atomic.Value
	verified              atomic.Bool  // the first signature was verified
	tsaKey                atomic.Value // ModeTSA: the kind of the first token's key
	// measureFrom is the end of the warm-up (Unix ns): earlier requests
	// are not counted.
	measureFrom int64
	// measureTo ends the measured time (Unix ns); answers received
	// between measureFrom and it count in inWindow.
	measureTo int64
	inWindow  atomic.Int64
}

// record counts a signature sent at t0 and received at now (Unix ns),
// unless it was sent during the warm-up.
func (r *run) record(t0, now int64, size int) {
	if now >= r.measureFrom && now < r.measureTo {
		r.inWindow.Add(1)
	}
	if t0 < r.measureFrom {
		return
	}
	r.hist.add(time.Duration(now - t0))
	r.bytes.Add(int64(size))
	r.done.Add(1)
}

// recordCall counts a call at a rate, scheduled at t0, sent at sent and
// answered (or refused, err) at now, all Unix ns.
func (r *run) recordCall(t0, sent, now int64, size int, err error) {
	if err != nil {
		if t0 < r.measureFrom {
			// A warm-up call: like its answers, its errors are not
			// counted, but the first one is still reported.
			r.firstErr.CompareAndSwap(nil, err.Error())
			return
		}
		r.fail(err)
		if isRefusal(err) {
			r.refusedHist.add(time.Duration(now - sent))
		}
		return
	}
	if t0 >= r.measureFrom {
		r.sentHist.add(time.Duration(now - sent))
	}
	r.record(t0, now, size)
}

// streamEnded counts the error that ended a stream while the run was
// still going (a refusal, an eviction, a lost connection); the end of a
// stream after the run, or its normal end, is not an error.
func (r *run) streamEnded(runCtx context.Context, err error) {
	if err == io.EOF || runCtx.Err() != nil {
		return
	}
	r.fail(err)
}

// sendFailed counts an error sending on a stream, except io.EOF: the
// server ended the stream, and its status, which the receiver counts, is
// the error.
func sendFailed(r *run, err error) {
	if err != io.EOF {
		r.fail(err)
	}
}

// closed reports whether ch is closed, without waiting.
func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func (r *run) fail(err error) {
	r.errors.Add(1)
	if isRefusal(err) {
		r.refused.Add(1)
	}
	r.firstErr.CompareAndSwap(nil, err.Error())
}

func (r *run) progress() func() {
	if r.cfg.Progress == nil {
		return func() {}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-stop:
				r.cfg.Progress(r.done.Load())
				return
			case <-t.C:
				r.cfg.Progress(r.done.Load())
			}
		}
	}()
	return func() { close(stop); <-done }
}

// hashFor makes distinct document hashes cheaply.
func hashFor(worker, n uint64) []byte {
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], worker)
	binary.BigEndian.PutUint64(b[8:], n)
	s := sha256.Sum256(b[:])
	return append([]byte{1}, s[:]...)
}

// unaryCall makes call number n and returns the size of what it got and
// when the request left (Unix ns), or 0 for "as the call started" (a
// call that first waits for a connection says when it had one).
type unaryCall func(ctx context.Context, n uint64) (size int, sent int64, err error)

// unary is one caller making one call after another.
func (r *run) unary(runCtx, callCtx context.Context, worker uint64, call unaryCall) {
	if r.cfg.Rate > 0 {
		r.unaryAtRate(runCtx, callCtx, worker, call)
		return
	}
	for n := uint64(0); runCtx.Err() == nil; n++ {
		t0 := time.Now()
		// No per-call deadline: a timer per call costs the generator more
		// than the measurement can afford; the run's context bounds it.
		size, _, err := call(callCtx, n)
		if err != nil {
			r.fail(err)
			continue
		}
		r.record(t0.UnixNano(), time.Now().UnixNano(), size)
	}
}

// unaryWorkers runs Concurrency callers (or, with a Rate, dispatchers)
// whose calls callFor makes, and waits for them.
func (r *run) unaryWorkers(runCtx, callCtx context.Context, callFor func(worker uint64) unaryCall) {
	var wg sync.WaitGroup
	for i := range r.cfg.Concurrency {
		wg.Add(1)
		worker := uint64(i)
		go func() {
			defer wg.Done()
			r.unary(runCtx, callCtx, worker, callFor(worker))
		}()
	}
	wg.Wait()
}

// unaryAtRate is one of Concurrency dispatchers that together start
// Rate calls per second on a fixed schedule, each call on its own
// goroutine, its latency counted from its scheduled time.
//
// The last calls get drainTimeout after the run, as the lean unary
// client's do; then what still waits for a connection or an answer fails.
func (r *run) unaryAtRate(runCtx, callCtx context.Context, worker uint64, call unaryCall) {
	callCtx, cancel := context.WithDeadline(callCtx, time.Unix(0, r.measureTo).Add(drainTimeout))
	defer cancel()
	sch := r.schedule(worker, 1)
	var wg sync.WaitGroup
	defer wg.Wait()
	for n := uint64(0); ; n++ {
		t0, ok := sch.wait(runCtx)
		if !ok {
			return
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now().UnixNano()
			size, sent, err := call(callCtx, n)
			if sent == 0 {
				sent = start
			}
			r.recordCall(t0, sent, time.Now().UnixNano(), size, err)
		}()
	}
}

// schedule gives one of Concurrency dispatchers its send times when the
// run has a Rate: each send carries per requests, and the dispatchers'
// times interleave so that together they send Rate requests a second.
type schedule struct {
	next     time.Time
	interval time.Duration
}

func (r *run) schedule(worker uint64, per int) *schedule {
	if r.cfg.Rate <= 0 {
		return nil
	}
	return newSchedule(r.cfg.Rate, r.cfg.Concurrency, worker, per)
}

// newSchedule is the schedule of dispatcher worker of dispatchers that
// together send rate requests a second, per at a time.
func newSchedule(rate float64, dispatchers int, worker uint64, per int) *schedule {
	interval := time.Duration(float64(time.Second) * float64(per) * float64(dispatchers) / rate)
	return &schedule{next: time.Now().Add(time.Duration(worker) * interval / time.Duration(dispatchers)), interval: interval}
}

// due returns the next send time (Unix ns) if it is not after now.
func (s *schedule) due(now time.Time) (int64, bool) {
	if s.next.After(now) {
		return 0, false
	}
	t := s.next.UnixNano()
	s.next = s.next.Add(s.interval)
	return t, true
}

// wait sleeps until the next send time and returns it (Unix ns); false
// when ctx ends first.
func (s *schedule) wait(ctx context.Context) (int64, bool) {
	if d := time.Until(s.next); d > 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
	}
	if ctx.Err() != nil {
		return 0, false
	}
	return s.due(s.next)
}

// stream keeps up to Window requests in flight on one stream; the send
// time of request id n sits in slot n % Window.
func (r *run) stream(runCtx, callCtx context.Context, c tempelv1.SignerClient, worker uint64) {
	s, err := c.SignStream(callCtx)
	if err != nil {
		r.fail(err)
		return
	}
	w := r.cfg.Window
	sent := make([]int64, w)
	slots := make(chan struct{}, w)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		for {
			resp, err := s.Recv()
			if err != nil {
				r.streamEnded(runCtx, err)
				return
			}
			t0 := atomic.LoadInt64(&sent[resp.RequestId%uint64(w)])
			if resp.Status != 0 {
				r.fail(ksiStatusError(uint64(resp.Status), resp.ErrorMessage))
			} else {
				r.record(t0, time.Now().UnixNano(), len(resp.Signature))
			}
			<-slots
		}
	}()
	for n := uint64(0); runCtx.Err() == nil; n++ {
		select {
		case slots <- struct{}{}:
		case <-runCtx.Done():
		case <-recvDone: // the server ended the stream
		}
		if runCtx.Err() != nil || closed(recvDone) {
			break
		}
		atomic.StoreInt64(&sent[n%uint64(w)], time.Now().UnixNano())
		if err := s.Send(&tempelv1.SignRequest{RequestId: n, Hash: hashFor(worker, n)}); err != nil {
			sendFailed(r, err)
			break
		}
	}
	s.CloseSend()
	<-recvDone
}

// batch is stream with batchSize requests per message and answers in
// batches as the server forms them. Unless cfg.FullSignatures, it asks
// for the shared-round form and assembles each complete signature, as the
// Go client does; the first one per stream is verified (internal policy)
// so that a wrong assembly fails the run rather than inflating it.
func (r *run) batch(runCtx, callCtx context.Context, c tempelv1.SignerClient, worker uint64) {
	s, err := c.SignBatchStream(callCtx)
	if err != nil {
		r.fail(err)
		return
	}
	w := max(r.cfg.Window, batchSize)
	sent := make([]int64, w)
	var inflight atomic.Int64
	freed := make(chan struct{}, 1)
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		var legs round.Joiner // signed once their round comes
		checked := false
		for {
			b, err := s.Recv()
			if err != nil {
				r.streamEnded(runCtx, err)
				return
			}
			now := time.Now().UnixNano()
			answered := 0
			for _, resp := range b.Responses {
				switch {
				case resp.Status != 0:
					r.fail(ksiStatusError(uint64(resp.Status), resp.ErrorMessage))
				case resp.Round != 0:
					legs.Add(resp.Round, round.Leg{ID: resp.RequestId, Hash: hashFor(worker, resp.RequestId), Shape: resp.Shape, Links: resp.Leg})
					continue // in flight until its round arrives
				default:
					r.record(atomic.LoadInt64(&sent[resp.RequestId%uint64(w)]), now, len(resp.Signature))
				}
				answered++
			}
			for _, p := range b.Rounds {
				if p.Status != 0 {
					answered += legs.Fail(p.Id, func(*round.Leg) {
						r.fail(fmt.Errorf("round %w", ksiStatusError(uint64(p.Status), p.ErrorMessage)))
					})
					continue
				}
				ans := &round.Answer{AggregationTime: p.AggregationTime, ChainIndex: p.ChainIndex, Elements: p.Elements}
				answered += legs.Join(p.Id, ksi.HashAlg(p.Algorithm), ans, func(l *round.Leg, sig []byte, err error) {
					if err == nil {
						err = r.checkFirst(sig, l.Hash, &checked)
					}
					if err != nil {
						r.fail(err)
						return
					}
					r.record(atomic.LoadInt64(&sent[l.ID%uint64(w)]), time.Now().UnixNano(), len(sig))
				})
			}
			inflight.Add(-int64(answered))
			select {
			case freed <- struct{}{}:
			default:
			}
		}
	}()
	reqs := make([]tempelv1.SignRequest, batchSize)
	ptrs := make([]*tempelv1.SignRequest, batchSize)
	// With a rate, batches leave on a fixed schedule and each request's
	// latency counts from its scheduled time, so a stall in the server
	// shows in the latency instead of slowing the generator down.
	sch := r.schedule(worker, batchSize)
	for n := uint64(0); runCtx.Err() == nil; {
		for inflight.Load()+batchSize > int64(w) && runCtx.Err() == nil && !closed(recvDone) {
			select {
			case <-freed:
			case <-runCtx.Done():
			case <-recvDone: // the server ended the stream
			case <-time.After(10 * time.Millisecond):
			}
		}
		if closed(recvDone) {
			break
		}
		now := time.Now().UnixNano()
		if r.cfg.Rate > 0 {
			var ok bool
			if now, ok = sch.wait(runCtx); !ok {
				break
			}
		}
		if runCtx.Err() != nil {
			break
		}
		for k := range reqs {
			reqs[k] = tempelv1.SignRequest{RequestId: n, Hash: hashFor(worker, n)}
			ptrs[k] = &reqs[k]
			atomic.StoreInt64(&sent[n%uint64(w)], now)
			n++
		}
		inflight.Add(batchSize)
		if err := s.Send(&tempelv1.SignBatch{Requests: ptrs, SharedRounds: !r.cfg.FullSignatures}); err != nil {
			sendFailed(r, err)
			break
		}
	}
	s.CloseSend()
	<-recvDone
}

// checkFirst verifies (internal policy) the first assembled signature
// per stream, so that a wrong assembly fails the run rather than
// inflating it.
func (r *run) checkFirst(sig, hash []byte, checked *bool) error {
	if *checked {
		return nil
	}
	*checked = true
	if err := checkSignature(sig, hash); err != nil {
		return fmt.Errorf("assembled %w", err)
	}
	return nil
}

// checkSignature parses sig and verifies it (internal policy) as the
// signature of hash: the generator checks a sample of what it counts.
func checkSignature(sig, hash []byte) error {
	parsed, err := ksi.ParseSignature(sig)
	if err != nil {
		return fmt.Errorf("signature: %w", err)
	}
	if rep := verifier.Verify(context.Background(), parsed, verifier.Internal, verifier.Options{Document: hash}); rep.Result != verifier.OK {
		return fmt.Errorf("signature does not verify: %s %s", rep.Code, rep.Message)
	}
	return nil
}
