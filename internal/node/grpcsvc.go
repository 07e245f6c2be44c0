package node

import (
	"context"
	"fmt"
	"io"
	"net"
	"path"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// Limits of the gRPC server.
const (
	maxMessage = 1 << 20 // no Tempel message is larger than a PDU
	// maxStreamWindow is a stream's flow-control window: what a client
	// may send before the server reads it, and so what the transport may
	// buffer for a signing stream (streamCost). 4 MiB is some 0.4 s of
	// the requests of a stream at 200,000 signatures a second.
	maxStreamWindow = 4 << 20
	// streamCost is what a signing stream reserves of the budget while
	// it runs: with the default budget, at most 224 streams at once.
	streamCost    = maxStreamWindow
	maxConnWindow = 64 << 20
)

func (n *Node) grpcServer() *grpc.Server {
	g := grpc.NewServer(
		n.transportCreds(),
		grpc.MaxRecvMsgSize(maxMessage),
		grpc.InitialWindowSize(maxStreamWindow), grpc.InitialConnWindowSize(maxConnWindow),
		// Authentication first: the gRPC metrics count authenticated calls.
		grpc.ChainUnaryInterceptor(n.unaryAuth, n.grpcm.UnaryServerInterceptor()),
		grpc.ChainStreamInterceptor(n.streamAuth, n.grpcm.StreamServerInterceptor()),
		grpc.ConnectionTimeout(n.cfg.ReadTimeout), // a new connection's HTTP/2 handshake
		grpc.KeepaliveParams(n.keepaliveParams()), grpc.KeepaliveEnforcementPolicy(keepalivePolicy),
		grpc.InTapHandle(n.admit),
	)
	tempelv1.RegisterSignerServer(g, n.h.signerSvc)
	healthpb.RegisterHealthServer(g, healthService{n: n})
	for _, register := range n.h.grpc {
		register(g)
	}
	n.registerReflection(g)
	n.grpcm.InitializeMetrics(g) // every method's series from zero, for rates and alerts
	return g
}

type identityKey struct{}

// identity is who called: the login of valid credentials, "anonymous" for
// a call without credentials in development mode.
type identity struct {
	login     string
	machineID string
}

func identityOf(ctx context.Context) identity {
	id, _ := ctx.Value(identityKey{}).(identity)
	return id
}

// withIdentity records an authenticated caller, with the machine id it
// sent (x-tempel-machine-id, at most 64 bytes), in ctx.
func withIdentity(ctx context.Context, login string, machineID []string) context.Context {
	id := identity{login: login}
	if len(machineID) > 0 && len(machineID[0]) <= 64 {
		id.machineID = machineID[0]
	}
	return context.WithValue(ctx, identityKey{}, id)
}

// authenticate decides who called method through the node's one
// authentication path (auth.go); a refusal is Unauthenticated.
func (n *Node) authenticate(ctx context.Context, method string) (context.Context, error) {
	if _, done := ctx.Value(identityKey{}).(identity); done {
		return ctx, nil // the gRPC tap (admit) authenticated this call
	}
	md, _ := metadata.FromIncomingContext(ctx)
	return n.authenticateMD(ctx, md, method)
}

// authenticateMD is authenticate with the call's metadata at hand (the
// gRPC tap has it without the copy FromIncomingContext makes).
func (n *Node) authenticateMD(ctx context.Context, md metadata.MD, method string) (context.Context, error) {
	var remote net.Addr
	if p, ok := peer.FromContext(ctx); ok {
		remote = p.Addr
	}
	id, err := n.auth.Authenticate(server.AuthRequest{Interface: server.IfaceGRPC, Route: method, RemoteAddr: remote,
		Authorization: md.Get("authorization")})
	if err != nil {
		return nil, status.Error(codes.Unauthenticated, err.Error())
	}
	return withIdentity(ctx, id.Login, md.Get("x-tempel-machine-id")), nil
}

func (n *Node) unaryAuth(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (resp any, err error) {
	defer func() { n.metrics.count("grpc", path.Base(info.FullMethod), status.Code(err).String()) }()
	ctx, err = n.authenticate(ctx, info.FullMethod)
	if err != nil {
		return nil, err
	}
	return h(ctx, req)
}

type authStream struct {
	grpc.ServerStream
	ctx context.Context
}

func (s *authStream) Context() context.Context { return s.ctx }

func (n *Node) streamAuth(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	ctx, err := n.authenticate(ss.Context(), info.FullMethod)
	if err == nil {
		err = n.memberOnly(ctx, info.FullMethod)
	}
	if err != nil {
		n.metrics.count("grpc-stream", path.Base(info.FullMethod), status.Code(err).String())
		return err
	}
	return h(srv, &authStream{ss, ctx})
}

type signerService struct {
	tempelv1.UnimplementedSignerServer
	n *Node
}

func (s *signerService) request(ctx context.Context, req *tempelv1.SignRequest) (aggregator.Request, error) {
	if req.Level > 0xFF {
		return aggregator.Request{}, aggregator.ErrLevelTooHigh
	}
	id := identityOf(ctx)
	return aggregator.Request{Hash: ksi.Imprint(req.Hash), Level: byte(req.Level),
		Identity: aggregator.Identity{ClientID: id.login, MachineID: id.machineID, Sequence: req.RequestId, HasSequence: req.RequestId != 0}}, nil
}

// Sign signs one hash with the node's signer: in the aggregator's round,
// or (role calendar) in the calendar's top tree for a child aggregator.
func (s *signerService) Sign(ctx context.Context, req *tempelv1.SignRequest) (*tempelv1.SignResponse, error) {
	r, err := s.request(ctx, req)
	if err != nil {
		return nil, aggError(err)
	}
	// A child aggregator sends its round roots as unary calls, marked
	// (read without copying the call's metadata).
	r.ChildRound = len(metadata.ValueFromIncomingContext(ctx, aggregator.ChildRoundKey)) > 0
	res := s.n.h.signer.sign(ctx, r)
	if res.err != nil {
		return nil, s.n.h.signErr(res.err)
	}
	return &tempelv1.SignResponse{RequestId: req.RequestId, Signature: res.sig, AggregationTime: res.aggrTime}, nil
}

// SignStream takes requests as they come and answers each when its round
// is done; answers may be out of order and carry the request id.
func (s *signerService) SignStream(stream grpc.BidiStreamingServer[tempelv1.SignRequest, tempelv1.SignResponse]) error {
	return s.serveStream(stream.Context(),
		func() ([]*tempelv1.SignRequest, bool, error) {
			req, err := stream.Recv()
			return []*tempelv1.SignRequest{req}, false, err
		},
		func(batch []*tempelv1.SignResponse, _ []*tempelv1.SharedRound) error {
			for _, r := range batch {
				if err := stream.Send(r); err != nil {
					return err
				}
			}
			return nil
		})
}

// SignBatchStream is SignStream with many requests and answers per message.
func (s *signerService) SignBatchStream(stream grpc.BidiStreamingServer[tempelv1.SignBatch, tempelv1.SignResponseBatch]) error {
	return s.serveStream(stream.Context(),
		func() ([]*tempelv1.SignRequest, bool, error) {
			b, err := stream.Recv()
			if err != nil {
				return nil, false, err
			}
			return b.Requests, b.SharedRounds, nil
		},
		func(batch []*tempelv1.SignResponse, rounds []*tempelv1.SharedRound) error {
			return stream.Send(&tempelv1.SignResponseBatch{Responses: batch, Rounds: rounds})
		})
}

// streamAnswer is one answer on its way to a stream's sender, with its
// round's shared part in the shared-round form.
type streamAnswer struct {
	resp  *tempelv1.SignResponse
	round *aggregator.SharedRound
	cost  int64 // what its request reserved of the budget
	// refused: the request was refused for lack of budget (it counts
	// costRefused in its stream, nothing in the budget).
	refused bool
}

// roundWait is a round whose legs a stream has sent: how many, so that
// those requests are counted when the round is sent.
type roundWait struct {
	r    *aggregator.SharedRound
	legs int
}

// answerQueue carries a stream's answers from the engine's callbacks to
// its sender. A callback never waits (engine callbacks must not block: a
// client that reads slowly would hold back every client's rounds); the
// stream's bound is on the receiving side instead: serveStream stops
// reading requests while their answers not yet sent hold the stream's
// share of the budget (Config.StreamShare).
type answerQueue struct {
	mu     sync.Mutex
	items  []streamAnswer
	closed bool
	ready  chan struct{} // has a value when items or closed changed
}

func newAnswerQueue() *answerQueue { return &answerQueue{ready: make(chan struct{}, 1)} }

func (q *answerQueue) push(a streamAnswer) {
	q.mu.Lock()
	q.items = append(q.items, a)
	q.mu.Unlock()
	q.signal()
}

func (q *answerQueue) close() {
	q.mu.Lock()
	q.closed = true
	q.mu.Unlock()
	q.signal()
}

func (q *answerQueue) signal() {
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

// takeAll returns what has been queued and whether the queue is closed;
// spare (emptied) becomes the queue's next buffer.
func (q *answerQueue) takeAll(spare []streamAnswer) ([]streamAnswer, bool) {
	clear(spare)
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = spare[:0]
	return items, q.closed
}

// sendAnswers is a stream's sender: it sends whatever answers have been
// queued, in batches of at most maxResponseBatch, and each round the
// stream has legs of once the round is done (oldest first: rounds are done
// in order), always after all of that round's legs.
func (s *signerService) sendAnswers(q *answerQueue, send func([]*tempelv1.SignResponse, []*tempelv1.SharedRound) error,
	inflight *waitCounter, sendErr chan<- error) {
	var failed error
	var waiting []*roundWait // by round id
	var got []streamAnswer
	batch := make([]*tempelv1.SignResponse, 0, maxResponseBatch)
	var rounds []*tempelv1.SharedRound
	var held int64    // what the answers in batch or rounds reserved
	var refused int64 // what refusals among them count in the stream
	signed := 0       // requests signed among them: counted once per batch
	budget := s.n.agg.Budget()
	flush := func() {
		if failed == nil && len(batch)+len(rounds) > 0 {
			if failed = send(batch, rounds); failed != nil {
				sendErr <- failed
			}
		}
		// Sent (or the stream is broken): those requests are answered.
		inflight.doneN(held + refused)
		budget.Release(held)
		s.n.metrics.countN("grpc-stream", "Sign", ksiStatus(0), signed)
		batch, rounds, held, refused, signed = batch[:0], rounds[:0], 0, 0, 0
	}
	// count records how n requests ended: a leg's request ends with its
	// round.
	count := func(status uint32, n int) {
		if status == 0 {
			signed += n
		} else {
			s.n.metrics.countN("grpc-stream", "Sign", ksiStatus(status), n)
		}
	}
	take := func(a streamAnswer) {
		if len(batch) == maxResponseBatch {
			flush()
		}
		batch = append(batch, a.resp)
		if a.refused {
			count(a.resp.Status, 1)
			refused += costRefused
			return
		}
		if a.round == nil {
			count(a.resp.Status, 1)
			held += a.cost
			return
		}
		k := len(waiting)
		for k > 0 && waiting[k-1].r.ID >= a.round.ID {
			k--
		}
		// A leg's request holds its cost until the leg is sent; then
		// only its count waits for the round.
		held += a.cost
		if k < len(waiting) && waiting[k].r == a.round {
			waiting[k].legs++
			return
		}
		waiting = append(waiting, nil)
		copy(waiting[k+1:], waiting[k:])
		waiting[k] = &roundWait{r: a.round, legs: 1}
	}
	for closed := false; !closed || len(waiting) > 0; {
		var head <-chan struct{}
		if len(waiting) > 0 {
			head = waiting[0].r.Done()
		}
		select {
		case <-q.ready:
		case <-head:
		}
		// Rounds done before the queue is read have all their legs in it:
		// a round is done only after its legs were queued.
		done := 0
		for done < len(waiting) && isDone(waiting[done].r) {
			done++
		}
		got, closed = q.takeAll(got)
		for _, a := range got {
			take(a)
		}
		for _, w := range waiting[:done] {
			p := sharedRoundProto(w.r)
			rounds = append(rounds, p)
			count(p.Status, w.legs)
		}
		waiting = waiting[done:]
		flush()
	}
	if failed == nil {
		sendErr <- nil
	}
}

func isDone(r *aggregator.SharedRound) bool {
	select {
	case <-r.Done():
		return true
	default:
		return false
	}
}

func sharedRoundProto(r *aggregator.SharedRound) *tempelv1.SharedRound {
	if r.Err != nil {
		return &tempelv1.SharedRound{Id: r.ID, Status: uint32(aggregator.Status(r.Err)), ErrorMessage: r.Err.Error()}
	}
	return &tempelv1.SharedRound{Id: r.ID, AggregationTime: r.Answer.AggregationTime, ChainIndex: r.Answer.ChainIndex,
		Algorithm: uint32(r.Alg), Elements: r.Answer.Elements}
}

// maxResponseBatch bounds one response message (about 1.5 MB of signatures).
const maxResponseBatch = 1024

// DefaultStreamShare is the part of the node's budget one stream's
// requests may hold (their answers not yet sent), as a divisor
// (Config.StreamShare): at the bound the stream's requests are not read
// until answers have gone out, and the transport's flow control holds
// that client back, and it alone. (A shared-round request holds its cost
// until its leg is sent; only its count waits for its round.)
const DefaultStreamShare = 4

func (n *Node) streamShare() int64 {
	if n.cfg.StreamShare > 0 {
		return n.cfg.StreamShare
	}
	return DefaultStreamShare
}

// serveStream runs a signing stream: recv gives the next requests, send
// writes a batch of answers. Answers are collected by a sender goroutine
// that sends whatever has arrived, so batches form by themselves when a
// round ends and many answers are ready at once.
//
// A stream reserves streamCost of the node's budget while it runs (it is
// refused with RESOURCE_EXHAUSTED when that does not fit), and each
// request its cost as it is read; a request that does not fit is
// answered at once with status 0x106 (too many requests). A stream whose
// sends make no progress for the send timeout (its client does not read)
// is ended with RESOURCE_EXHAUSTED, and what it held is freed as its
// rounds end.
func (s *signerService) serveStream(ctx context.Context, recv func() ([]*tempelv1.SignRequest, bool, error),
	send func([]*tempelv1.SignResponse, []*tempelv1.SharedRound) error) error {
	// What the transport may buffer for the stream: its flow-control
	// window, held from the stream's start to its end.
	budget := s.n.agg.Budget()
	if !budget.Reserve(streamCost) {
		s.n.metrics.count("grpc-stream", "Sign", "no-memory")
		return errNoStreamMemory
	}
	defer budget.Release(streamCost)
	out := newAnswerQueue()
	sendErr := make(chan error, 1)
	senderDone := make(chan struct{})
	var inflight waitCounter
	watch := newSendWatch(s.n.streamSendTimeout(), s.n.blocked)
	defer watch.stop()
	go func() {
		defer close(senderDone)
		s.sendAnswers(out, watch.watched(send), &inflight, sendErr)
	}()
	readDone := make(chan error, 1)
	go func() {
		readDone <- s.readRequests(ctx, recv, out, &inflight, sendErr)
		// Every accepted request is answered (or, once sending failed,
		// dropped) before the sender stops.
		inflight.wait()
		out.close()
	}()
	// Returning ends the stream, which unblocks its Send and Recv; the
	// reader and the sender then finish on their own, releasing what the
	// stream held as its rounds end.
	stuck := func() error {
		if watch.evicted.Load() {
			s.n.metrics.count("grpc-stream", "Sign", "evicted-not-reading")
			return status.Error(codes.ResourceExhausted, "server: overloaded: the client reads no answers: stream ended to make room for others")
		}
		s.n.metrics.count("grpc-stream", "Sign", "send-timeout")
		return status.Errorf(codes.ResourceExhausted, "server: the client has read no answer for %s: stream ended", watch.timeout)
	}
	var err error
	select {
	case err = <-readDone:
	case <-watch.stuck:
		return stuck()
	}
	select {
	case <-senderDone:
		return err
	case <-watch.stuck:
		return stuck()
	}
}

// Streams that are not read. A stream is not read while its answers not
// yet sent hold its share of the budget, or, once its requests are being
// refused, while its refusals not yet sent exceed refusedWindow; the
// transport's flow control then holds its client back. A client that
// reads its answers is read again as soon as they have gone out.
const (
	// costRefused is what a refused request's answer holds until sent
	// (charged to its stream only: refusals are made when the budget is
	// full).
	costRefused   = 256
	refusedWindow = 64 << 10
)

var errNoStreamMemory = status.Error(codes.ResourceExhausted, "server: overloaded: no memory for another signing stream, try again shortly")

// readRequests reads the stream's requests and submits them until the
// client ends its side, the stream fails or sending fails.
func (s *signerService) readRequests(ctx context.Context, recv func() ([]*tempelv1.SignRequest, bool, error),
	out *answerQueue, inflight *waitCounter, sendErr <-chan error) error {
	budget := s.n.agg.Budget()
	share := budget.Limit() / s.n.streamShare()
	limit := share
	for {
		reqs, shared, err := recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		select {
		case err := <-sendErr:
			return err
		default:
		}
		// A client that does not read its answers is not read either: the
		// transport's flow control then holds it back.
		if !inflight.waitBelow(ctx, limit) {
			return ctx.Err()
		}
		limit = share
		cost := int64(aggregator.CostStreamed)
		if shared {
			cost = aggregator.CostLeg
		}
		for _, req := range reqs {
			id := req.RequestId
			if !budget.Reserve(cost) {
				inflight.add(costRefused)
				out.push(streamAnswer{resp: &tempelv1.SignResponse{RequestId: id, Status: uint32(aggregator.Status(budget.Err())), ErrorMessage: budget.Err().Error()}, refused: true})
				limit = refusedWindow
				continue
			}
			// Every admitted request, answered or refused, is in flight
			// until the sender has sent its answer.
			inflight.add(cost)
			r, err := s.request(ctx, req)
			switch {
			case err == nil && shared:
				err = s.n.agg.SubmitShared(r, func(x aggregator.Leg) {
					resp := &tempelv1.SignResponse{RequestId: id}
					if x.Err != nil {
						resp.Status, resp.ErrorMessage = uint32(aggregator.Status(x.Err)), x.Err.Error()
						out.push(streamAnswer{resp: resp, cost: cost})
						return
					}
					// A leg: the request stays in flight until the
					// sender has sent its round.
					resp.Round, resp.Leg, resp.Shape = x.Round.ID, x.Leg, x.Shape
					out.push(streamAnswer{resp: resp, round: x.Round, cost: cost})
				})
			case err == nil:
				err = s.n.agg.Submit(r, func(x aggregator.Signed) {
					resp := &tempelv1.SignResponse{RequestId: id, Signature: x.Signature, AggregationTime: x.AggregationTime}
					if x.Err != nil {
						resp.Status, resp.ErrorMessage = uint32(aggregator.Status(x.Err)), x.Err.Error()
					}
					out.push(streamAnswer{resp: resp, cost: cost})
				})
			}
			if err != nil {
				out.push(streamAnswer{resp: &tempelv1.SignResponse{RequestId: id, Status: uint32(aggregator.Status(err)), ErrorMessage: err.Error()}, cost: cost})
			}
		}
	}
}

// healthService answers the standard gRPC health check (grpc.health.v1)
// with the node's readiness, as /readyz does, for load balancers and
// orchestrators that probe over gRPC.
type healthService struct {
	healthpb.UnimplementedHealthServer
	n *Node
}

func (h healthService) Check(_ context.Context, req *healthpb.HealthCheckRequest) (*healthpb.HealthCheckResponse, error) {
	if req.Service != "" {
		return nil, status.Errorf(codes.NotFound, "unknown service %q: only the server as a whole (\"\") is checked", req.Service)
	}
	if h.n.ready() != nil {
		return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_NOT_SERVING}, nil
	}
	return &healthpb.HealthCheckResponse{Status: healthpb.HealthCheckResponse_SERVING}, nil
}

type extenderService struct {
	tempelv1.UnimplementedExtenderServer
	n *Node
}

func (s *extenderService) Extend(ctx context.Context, req *tempelv1.ExtendRequest) (*tempelv1.ExtendResponse, error) {
	ch, last, err := s.n.cal.Extend(req.AggregationTime, req.PublicationTime)
	if err != nil {
		return nil, calError(err)
	}
	return &tempelv1.ExtendResponse{CalendarChain: ch.Raw, CalendarLastTime: last}, nil
}

func (s *extenderService) GetCalendarHead(ctx context.Context, _ *tempelv1.GetCalendarHeadRequest) (*tempelv1.CalendarHead, error) {
	first, last, root, err := s.n.cal.Head()
	if err != nil {
		return nil, calError(err)
	}
	return &tempelv1.CalendarHead{FirstTime: first, LastTime: last, Root: root}, nil
}

type publicationsService struct {
	tempelv1.UnimplementedPublicationsServer
	n *Node
}

func (s *publicationsService) GetPublicationsFile(ctx context.Context, _ *tempelv1.GetPublicationsFileRequest) (*tempelv1.PublicationsFile, error) {
	f, etag := s.n.pub.File()
	return &tempelv1.PublicationsFile{Content: f, Etag: etag}, nil
}

func (s *publicationsService) ListPublications(ctx context.Context, req *tempelv1.ListPublicationsRequest) (*tempelv1.ListPublicationsResponse, error) {
	out := &tempelv1.ListPublicationsResponse{}
	for _, p := range s.n.pub.Publications() {
		if p.Data.Time < req.SinceTime {
			continue
		}
		out.Publications = append(out.Publications, &tempelv1.Publication{
			PublicationTime: p.Data.Time, PublishedHash: p.Data.Hash, PublicationString: p.Data.String()})
	}
	return out, nil
}

// ksiStatus labels a stream answer by its KSI status code.
func ksiStatus(code uint32) string {
	if code == 0 {
		return "OK"
	}
	return fmt.Sprintf("0x%03x", code)
}
