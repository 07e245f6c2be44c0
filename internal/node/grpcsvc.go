package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	"github.com/tempel-ksi/tempel/internal/server"
	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// Limits of the gRPC server.
const (
	maxMessage      = 1 << 20 // no Tempel message is larger than a PDU
	maxStreamWindow = 64 << 20
)

func (n *Node) grpcServer() *grpc.Server {
	g := grpc.NewServer(
		n.transportCreds(),
		grpc.MaxRecvMsgSize(maxMessage),
		grpc.InitialWindowSize(maxStreamWindow), grpc.InitialConnWindowSize(maxStreamWindow),
		grpc.UnaryInterceptor(n.unaryAuth), grpc.StreamInterceptor(n.streamAuth),
		grpc.ConnectionTimeout(n.cfg.ReadTimeout), // a new connection's HTTP/2 handshake
		grpc.KeepaliveParams(n.keepaliveParams()), grpc.KeepaliveEnforcementPolicy(keepalivePolicy),
	)
	tempelv1.RegisterSignerServer(g, &signerService{n: n})
	healthpb.RegisterHealthServer(g, healthService{n: n})
	if n.cal != nil {
		tempelv1.RegisterExtenderServer(g, &extenderService{n: n})
		tempelv1.RegisterPublicationsServer(g, &publicationsService{n: n})
	}
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
	md, _ := metadata.FromIncomingContext(ctx)
	remote := ""
	if p, ok := peer.FromContext(ctx); ok && p.Addr != nil {
		remote = p.Addr.String()
	}
	id, err := n.auth.Authenticate(server.AuthRequest{Interface: server.IfaceGRPC, Route: method, Remote: remote,
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
	if err != nil {
		n.metrics.count("grpc-stream", path.Base(info.FullMethod), status.Code(err).String())
		return err
	}
	return h(srv, &authStream{ss, ctx})
}

// grpcError maps service errors to gRPC status codes.
func grpcError(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, aggregator.ErrBadRequest), errors.Is(err, aggregator.ErrLevelTooHigh):
		return status.Error(codes.InvalidArgument, err.Error())
	case errors.Is(err, aggregator.ErrOverQuota), errors.Is(err, aggregator.ErrOverloaded), errors.Is(err, calendar.ErrOverloaded):
		return status.Error(codes.ResourceExhausted, err.Error())
	case errors.Is(err, aggregator.ErrUpstreamTime), errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, err.Error())
	case errors.Is(err, aggregator.ErrUpstream), errors.Is(err, aggregator.ErrStopped), errors.Is(err, calendar.ErrStopped),
		errors.Is(err, calendar.ErrNotReady), errors.Is(err, calendar.ErrFailed):
		return status.Error(codes.Unavailable, err.Error())
	case errors.Is(err, calendar.ErrTimeTooOld), errors.Is(err, calendar.ErrTimeTooNew), errors.Is(err, calendar.ErrBadRange),
		errors.Is(err, calendar.ErrEmpty):
		return status.Error(codes.OutOfRange, err.Error())
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, err.Error())
	}
	return status.Error(codes.Internal, err.Error())
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

// Sign signs one hash: in the aggregator's round, or (role calendar) in
// the calendar's top tree for a child aggregator.
func (s *signerService) Sign(ctx context.Context, req *tempelv1.SignRequest) (*tempelv1.SignResponse, error) {
	r, err := s.request(ctx, req)
	if err != nil {
		return nil, grpcError(err)
	}
	if s.n.agg == nil {
		if _, err := ksi.ParseImprint(r.Hash); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
		sig, err := s.n.cal.Sign(ctx, r.Hash, r.Level, r.Identity.ClientID)
		if err != nil {
			return nil, grpcError(err)
		}
		return &tempelv1.SignResponse{RequestId: req.RequestId, Signature: sig}, nil
	}
	res := s.n.agg.Sign(ctx, r)
	if res.Err != nil {
		return nil, grpcError(res.Err)
	}
	return &tempelv1.SignResponse{RequestId: req.RequestId, Signature: res.Signature, AggregationTime: res.AggregationTime}, nil
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
}

// roundWait is a round whose legs a stream has sent: how many, so that
// those requests leave the in-flight count when the round is sent.
type roundWait struct {
	r    *aggregator.SharedRound
	legs int
}

// answerQueue carries a stream's answers from the engine's callbacks to
// its sender. A callback never waits (engine callbacks must not block: a
// client that reads slowly would hold back every client's rounds); the
// stream's bound is on the receiving side instead: serveStream stops
// reading requests while maxStreamInFlight of them are not yet sent.
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
	answered := 0 // requests whose answer is in batch or rounds
	signed := 0   // of those, signed: counted once per batch
	flush := func() {
		if failed == nil && len(batch)+len(rounds) > 0 {
			if failed = send(batch, rounds); failed != nil {
				sendErr <- failed
			}
		}
		// Sent (or the stream is broken): those requests are answered.
		inflight.doneN(answered)
		s.n.metrics.countN("grpc-stream", "Sign", ksiStatus(0), signed)
		batch, rounds, answered, signed = batch[:0], rounds[:0], 0, 0
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
		if a.round == nil {
			count(a.resp.Status, 1)
			answered++
			return
		}
		k := len(waiting)
		for k > 0 && waiting[k-1].r.ID >= a.round.ID {
			k--
		}
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
			answered += w.legs
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

// maxStreamInFlight bounds the requests of one stream whose answers have
// not been sent, and so what is queued for a client that does not read
// (about 1.7 GB of signatures at most); at the bound the stream's
// requests are not read until answers have gone out. A shared-round
// request stays in flight about a second, until its round is sent: this
// allows about a million signatures a second on one stream.
var maxStreamInFlight = 1 << 20

// serveStream runs a signing stream: recv gives the next requests, send
// writes a batch of answers. Answers are collected by a sender goroutine
// that sends whatever has arrived, so batches form by themselves when a
// round ends and many answers are ready at once.
func (s *signerService) serveStream(ctx context.Context, recv func() ([]*tempelv1.SignRequest, bool, error),
	send func([]*tempelv1.SignResponse, []*tempelv1.SharedRound) error) error {
	if s.n.agg == nil {
		return status.Error(codes.Unimplemented, "the calendar role signs unary calls only")
	}
	out := newAnswerQueue()
	sendErr := make(chan error, 1)
	senderDone := make(chan struct{})
	var inflight waitCounter
	go func() {
		defer close(senderDone)
		s.sendAnswers(out, send, &inflight, sendErr)
	}()
	defer func() {
		// Every accepted request is answered before the stream ends.
		inflight.wait()
		out.close()
		<-senderDone
	}()
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
		if !inflight.waitBelow(ctx, maxStreamInFlight) {
			return ctx.Err()
		}
		for _, req := range reqs {
			id := req.RequestId
			// Every request, answered or refused, is in flight until the
			// sender has sent its answer.
			inflight.add()
			r, err := s.request(ctx, req)
			if err == nil {
				r.Shared = shared
				err = s.n.agg.Submit(r, func(x aggregator.Result) {
					resp := &tempelv1.SignResponse{RequestId: id, Signature: x.Signature, AggregationTime: x.AggregationTime}
					if x.Err != nil {
						resp.Status, resp.ErrorMessage = uint32(aggregator.Status(x.Err)), x.Err.Error()
					} else if x.Round != nil {
						// A leg: the request stays in flight until the
						// sender has sent its round.
						resp.Round, resp.Leg, resp.Shape = x.Round.ID, x.Leg, x.Shape
						out.push(streamAnswer{resp, x.Round})
						return
					}
					out.push(streamAnswer{resp, nil})
				})
			}
			if err != nil {
				out.push(streamAnswer{resp: &tempelv1.SignResponse{RequestId: id, Status: uint32(aggregator.Status(err)), ErrorMessage: err.Error()}})
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
		return nil, grpcError(err)
	}
	return &tempelv1.ExtendResponse{CalendarChain: ch.Raw, CalendarLastTime: last}, nil
}

func (s *extenderService) GetCalendarHead(ctx context.Context, _ *tempelv1.GetCalendarHeadRequest) (*tempelv1.CalendarHead, error) {
	first, last, root, err := s.n.cal.Head()
	if err != nil {
		return nil, grpcError(err)
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
