package client

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/tempel-ksi/tempel/ksi"
	"github.com/tempel-ksi/tempel/ksi/tlv"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// Defaults and bounds of the retry settings of [Config].
const (
	DefaultRetries      = 2
	MaxRetries          = 10
	DefaultRetryBackoff = 100 * time.Millisecond
	// MaxRetryBackoff bounds one pause between retries.
	MaxRetryBackoff = 5 * time.Second
)

// fanOutTarget names the client's virtual connection: unary calls made on
// it never leave the process; its interceptor sends them to the endpoints.
const fanOutTarget = "passthrough:///tempel-endpoints"

// newFanOut returns the virtual connection every unary call goes through.
// Its interceptor ([Client.fanOut]) sends a call to the endpoints, so the
// per-method code (one RPC on one connection) stays unaware of them. The
// connection itself never dials: the interceptor never calls the invoker.
func (c *Client) newFanOut() (*grpc.ClientConn, error) {
	return grpc.NewClient(fanOutTarget,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithUnaryInterceptor(c.fanOut))
}

// callInfo travels in the context from [Client.call] to [Client.fanOut].
type callInfo struct {
	op string
	// check, when set, is one more condition an answer must meet to win,
	// besides the checks of its message type ([Client.checkAnswer]).
	check func(reply proto.Message) error
}

type callInfoKey struct{}

func withCallInfo(ctx context.Context, ci callInfo) context.Context {
	return context.WithValue(ctx, callInfoKey{}, ci)
}

// fanOut is the unary interceptor of the virtual connection: it sends
// the call to the endpoints (askEndpoints) and copies the winning answer
// into reply.
func (c *Client) fanOut(ctx context.Context, method string, req, reply any, _ *grpc.ClientConn, _ grpc.UnaryInvoker, opts ...grpc.CallOption) error {
	ci, _ := ctx.Value(callInfoKey{}).(callInfo)
	if ci.op == "" {
		ci.op = path.Base(method)
	}
	out, ok := reply.(proto.Message)
	if !ok {
		return fmt.Errorf("client: %s: reply %T is not a protocol buffer", ci.op, reply)
	}
	r, err := askEndpoints(ctx, c, ci.op, func(ctx context.Context, i int) (proto.Message, int, error) {
		return c.attempts(ctx, ci, i, method, req, out, opts)
	})
	if err != nil {
		return err
	}
	proto.Merge(out, r)
	return nil
}

// askEndpoints runs attempt (all of one endpoint's tries) at
// Config.Parallel endpoints at once, starting with the one that answered
// last (so that once an endpoint is found unreachable, later calls do not
// wait for it first) and going on in the configured order; when one fails
// for good, the next endpoint not yet asked takes its place. The first
// success wins and the other attempts are cancelled. When every endpoint
// fails, the error names each one's failure ([EndpointsError]), in the
// order they were asked.
func askEndpoints[T any](ctx context.Context, c *Client, op string, attempt func(ctx context.Context, i int) (T, int, error)) (T, error) {
	type result struct {
		i        int
		value    T
		attempts int
		err      error
	}
	actx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, len(c.conns)) // never blocks a sender
	first := int(c.preferred.Load())
	next, running := 0, 0
	start := func() {
		i := (first + next) % len(c.conns)
		next++
		running++
		go func() {
			v, n, err := attempt(actx, i)
			results <- result{i: i, value: v, attempts: n, err: err}
		}()
	}
	for next < c.parallel {
		start()
	}
	var zero T
	failures := make([]EndpointFailure, len(c.conns))
	for running > 0 {
		r := <-results
		running--
		if r.err == nil {
			cancel()
			c.preferred.Store(int32(r.i))
			return r.value, nil
		}
		failures[r.i] = EndpointFailure{Endpoint: c.cfg.Endpoints[r.i], Attempts: r.attempts, Err: r.err}
		if ctx.Err() == nil && next < len(c.conns) {
			start()
		}
	}
	if err := ctx.Err(); err != nil {
		return zero, fmt.Errorf("client: %s: %w", op, err)
	}
	asked := make([]EndpointFailure, 0, next)
	for k := range next {
		asked = append(asked, failures[(first+k)%len(c.conns)])
	}
	if len(asked) == 1 {
		return zero, asked[0].err()
	}
	return zero, &EndpointsError{Op: op, Failures: asked}
}

// attempts runs the call at endpoint i until it gives a valid answer, it
// fails in a way retrying cannot mend, or the retries are spent. Each
// attempt has Config.Timeout; a retry waits for [Client.backoff] first.
func (c *Client) attempts(ctx context.Context, ci callInfo, i int, method string, req any, like proto.Message, opts []grpc.CallOption) (proto.Message, int, error) {
	endpoint := c.cfg.Endpoints[i]
	for n := 1; ; n++ {
		reply := like.ProtoReflect().New().Interface()
		actx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
		err := c.conns[i].Invoke(actx, method, req, reply, opts...)
		cancel()
		if err == nil {
			// A bad answer is the server's fault: asking it again is no
			// better than asking the others, which are still running.
			if err := c.checkAnswer(ctx, ci, endpoint, req, reply); err != nil {
				return nil, n, err
			}
			return reply, n, nil
		}
		if ctx.Err() != nil || n > c.retries || !retryable(err) {
			return nil, n, rpcErr(ctx, ci.op, endpoint, err)
		}
		t := time.NewTimer(c.backoff(n))
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, n, rpcErr(ctx, ci.op, endpoint, err)
		case <-t.C:
		}
	}
}

// retryable reports whether a failed attempt may be repeated: the server
// was unreachable, did not answer in time or shed load. A refusal of the
// request or the credentials is final.
func retryable(err error) bool {
	switch status.Code(err) {
	case codes.Unavailable, codes.DeadlineExceeded, codes.ResourceExhausted:
		return true
	}
	return false
}

// backoff is the pause before retry n (1, 2, ...): RetryBackoff doubled
// per earlier retry, at most MaxRetryBackoff, of which a random part
// (up to half) is dropped, so that clients failed by the same outage do
// not come back in step.
func (c *Client) backoff(n int) time.Duration {
	d := c.cfg.RetryBackoff
	for k := 1; k < n && d < MaxRetryBackoff; k++ {
		d *= 2
	}
	d = min(d, MaxRetryBackoff)
	return d - rand.N(d/2+1)
}

// checkAnswer applies to an endpoint's answer the checks the client makes
// of that kind of answer, so that an answer failing them never wins over
// another endpoint's: a signature must verify internally against the
// requested hash and level, a calendar chain must parse and belong to the
// requested times, a calendar head and a publications file must parse.
// Answers of other methods pass. The callers check again what they use;
// these checks only choose the winner.
func (c *Client) checkAnswer(ctx context.Context, ci callInfo, endpoint string, req any, reply proto.Message) error {
	var err error
	switch r := reply.(type) {
	case *tempelv1.SignResponse:
		q, ok := req.(*tempelv1.SignRequest)
		switch {
		case !ok:
			err = fmt.Errorf("client: %s via %s: request %T for a signature", ci.op, endpoint, req)
		case q.Level > 0xff:
			err = fmt.Errorf("%w: %s: level %d above 255", ErrInvalid, ci.op, q.Level)
		default:
			_, err = checkSignature(ctx, endpoint, r.Signature, q.Hash, byte(q.Level))
		}
	case *tempelv1.ExtendResponse:
		q, _ := req.(*tempelv1.ExtendRequest)
		err = checkExtendAnswer(ci.op, endpoint, q, r)
	case *tempelv1.CalendarHead:
		if _, perr := ksi.ParseImprint(r.Root); perr != nil || r.FirstTime > r.LastTime {
			err = fmt.Errorf("%w: %s via %s: head from %d to %d, root: %v", ErrBadResponse, ci.op, endpoint, r.FirstTime, r.LastTime, perr)
		}
	case *tempelv1.PublicationsFile:
		if _, perr := ksi.ParsePublicationsFile(r.Content); perr != nil {
			err = fmt.Errorf("%w: %s via %s: %v", ErrBadResponse, ci.op, endpoint, perr)
		}
	}
	if err == nil && ci.check != nil {
		if cerr := ci.check(reply); cerr != nil {
			err = fmt.Errorf("client: %s via %s: %w", ci.op, endpoint, cerr)
		}
	}
	return err
}

// checkExtendAnswer checks what an extender's answer can be checked
// against without the signature: the chain parses, computes, and has the
// requested aggregation time and (when one was asked for) publication
// time. [Client.ExtendTo] checks the rest against the signature.
func checkExtendAnswer(op, endpoint string, q *tempelv1.ExtendRequest, r *tempelv1.ExtendResponse) error {
	bad := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s via %s: calendar chain: %s", ErrBadResponse, op, endpoint, fmt.Sprintf(format, args...))
	}
	e, err := tlv.ReadOne(r.CalendarChain)
	if err != nil {
		return bad("%v", err)
	}
	if e.Type != ksi.TypeCalendarChain {
		return bad("element type %#x, want %#x", e.Type, ksi.TypeCalendarChain)
	}
	chain, err := ksi.ParseCalendarChain(e)
	if err != nil {
		return bad("%v", err)
	}
	var h ksi.Hasher
	if _, err := chain.Output(&h); err != nil {
		return bad("%v", err)
	}
	if q == nil {
		return nil
	}
	if chain.AggregationTime != q.AggregationTime {
		return bad("aggregation time %d, want %d", chain.AggregationTime, q.AggregationTime)
	}
	if q.PublicationTime != 0 && chain.PublicationTime != q.PublicationTime {
		return bad("publication time %d, want %d", chain.PublicationTime, q.PublicationTime)
	}
	return nil
}

// EndpointsError is the failure of a call at every endpoint it was sent
// to. It wraps each endpoint's error, so [errors.Is] finds the sentinels
// of any of them (ErrUnavailable when all were down, for instance).
type EndpointsError struct {
	Op string
	// Failures are in the order of Config.Endpoints; endpoints never
	// asked (the call ended first) are left out.
	Failures []EndpointFailure
}

// EndpointFailure is why one endpoint failed a call.
type EndpointFailure struct {
	Endpoint string
	Attempts int // 1 + the retries made
	Err      error
}

// err is the failure's error with its attempt count.
func (f EndpointFailure) err() error {
	if f.Attempts > 1 {
		return fmt.Errorf("%w (%d attempts)", f.Err, f.Attempts)
	}
	return f.Err
}

func (e *EndpointsError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "client: %s failed at every endpoint (%d): ", e.Op, len(e.Failures))
	for i, f := range e.Failures {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "[%s] %s", f.Endpoint, strings.TrimPrefix(f.err().Error(), "client: "))
	}
	return b.String()
}

// Unwrap returns each endpoint's error.
func (e *EndpointsError) Unwrap() []error {
	errs := make([]error, len(e.Failures))
	for i, f := range e.Failures {
		errs[i] = f.Err
	}
	return errs
}
