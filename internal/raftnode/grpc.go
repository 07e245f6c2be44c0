package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The raft service, written by hand (no .proto to generate from): the
// client-streaming method Send whose messages are wrapperspb.BytesValue
// holding a proto-marshalled raftpb.Message, answered by emptypb.Empty
// when the client closes the stream, and the server-streaming method
// Fetch (fetch.go), BytesValue in and out.
const (
	ServiceName = "tempel.raft.v1.Raft"
	sendMethod  = "/" + ServiceName + "/Send"
)

// wrapOverhead is what the BytesValue around a raft message adds.
const wrapOverhead = 16

// DefaultPeerQueue and DefaultPeerQueueBytes bound the messages waiting
// for one peer's stream, by count and by size; more are dropped and raft
// is told the peer is unreachable. When the stream fails, everything
// waiting is dropped too: raft probes the peer again, and stale appends
// delivered late would only cost bandwidth.
const (
	DefaultPeerQueue      = 1024
	DefaultPeerQueueBytes = 32 << 20
)

// PeerKeepalive and PeerKeepaliveTimeout: a peer connection silent for
// PeerKeepalive is pinged and closed when the ping is not answered within
// PeerKeepaliveTimeout. The servers of the members must permit pings
// that often (KeepaliveEnforcement).
const (
	PeerKeepalive        = 10 * time.Second
	PeerKeepaliveTimeout = 3 * time.Second
)

// KeepaliveEnforcement is the least a member's gRPC server must permit
// its peers' keepalive pings (grpc.KeepaliveEnforcementPolicy).
var KeepaliveEnforcement = keepalive.EnforcementPolicy{MinTime: PeerKeepalive, PermitWithoutStream: true}

// Reconnection: after a failed stream the peer's sender waits from
// minRetry, doubling up to maxRetry; the connection below it redials
// with gRPC's backoff capped at maxRetry as well, so that a restarted
// member is reached within about a second.
const (
	minRetry = 50 * time.Millisecond
	maxRetry = time.Second
)

// raftReceiver is what the service's handler needs of the member.
type raftReceiver interface {
	Step(m *pb.Message) error
	maxMessage() int
	serveFetch(ctx context.Context, req []byte, send func([]byte) error) error
}

func (n *Node) maxMessage() int { return n.cfg.MaxMessageBytes }

var serviceDesc = grpc.ServiceDesc{
	ServiceName: ServiceName,
	HandlerType: (*raftReceiver)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Send",
		Handler:       receiveStream,
		ClientStreams: true,
	}, fetchDesc},
	Metadata: "tempel/raft/v1 (hand-written, internal/raftnode)",
}

// RegisterServer registers the raft service of member n on s, the node's
// gRPC server, which must permit the peers' keepalive pings
// (KeepaliveEnforcement or laxer). Register before s serves; n receives
// messages from then on.
func RegisterServer(s *grpc.Server, n *Node) {
	s.RegisterService(&serviceDesc, raftReceiver(n))
}

// receiveStream reads raft messages from one peer's stream until the
// peer closes it. A message that does not decode or is not for this
// member ends the stream with InvalidArgument; a full receive queue
// drops the message (raft retransmits) and keeps the stream.
func receiveStream(srv any, stream grpc.ServerStream) error {
	r := srv.(raftReceiver)
	for {
		in := new(wrapperspb.BytesValue)
		if err := stream.RecvMsg(in); err != nil {
			if errors.Is(err, io.EOF) {
				return stream.SendMsg(&emptypb.Empty{})
			}
			return err
		}
		if limit := r.maxMessage() - wrapOverhead; len(in.GetValue()) > limit {
			return status.Errorf(codes.ResourceExhausted, "raftnode: raft message of %d bytes, at most %d", len(in.GetValue()), limit)
		}
		m := new(pb.Message)
		if err := proto.Unmarshal(in.GetValue(), m); err != nil {
			return status.Errorf(codes.InvalidArgument, "raftnode: not a raft message: %v", err)
		}
		switch err := r.Step(m); {
		case err == nil, errors.Is(err, ErrBusy):
		case errors.Is(err, ErrStopped):
			return status.Error(codes.Unavailable, err.Error())
		default:
			return status.Error(codes.InvalidArgument, err.Error())
		}
	}
}

// GRPCOptions configures a GRPCTransport.
type GRPCOptions struct {
	// DialOptions are passed to every peer's connection; they must
	// carry the transport credentials (TLS with a client certificate
	// in production, insecure only in tests).
	DialOptions []grpc.DialOption
	// MaxMessageBytes bounds a message sent; DefaultMaxMessageBytes
	// when 0. Keep it equal to the receivers' Config.MaxMessageBytes.
	MaxMessageBytes int
	// PeerQueue and PeerQueueBytes are DefaultPeerQueue and
	// DefaultPeerQueueBytes when 0.
	PeerQueue      int
	PeerQueueBytes int
	// Logger; nil discards.
	Logger *slog.Logger
}

// GRPCTransport sends raft messages to peers over gRPC: per peer one
// lazily dialled connection, one long-lived Send stream for ordinary
// messages fed from a bounded queue, and a separate short stream per
// snapshot so that a large snapshot never holds up heartbeats.
type GRPCTransport struct {
	opts GRPCOptions
	log  *slog.Logger

	mu      sync.Mutex
	self    uint64
	r       Reporter
	peers   map[uint64]*peer
	stopped bool
}

// NewGRPCTransport returns a transport to give Config.Transport.
func NewGRPCTransport(opts GRPCOptions) *GRPCTransport {
	setDefault(&opts.PeerQueue, DefaultPeerQueue)
	setDefault(&opts.PeerQueueBytes, DefaultPeerQueueBytes)
	setDefault(&opts.MaxMessageBytes, DefaultMaxMessageBytes)
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	return &GRPCTransport{opts: opts, log: opts.Logger, peers: make(map[uint64]*peer)}
}

// Start implements Transport.
func (t *GRPCTransport) Start(self uint64, r Reporter) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.r != nil {
		return errors.New("raftnode: transport started twice")
	}
	t.self, t.r = self, r
	return nil
}

// AddPeer implements Transport: a new address replaces the peer's
// connection.
func (t *GRPCTransport) AddPeer(id uint64, addr string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped || id == t.self {
		return
	}
	if p := t.peers[id]; p != nil {
		if p.addr == addr {
			return
		}
		go p.close()
	}
	t.peers[id] = t.newPeer(id, addr)
}

// RemovePeer implements Transport.
func (t *GRPCTransport) RemovePeer(id uint64) {
	t.mu.Lock()
	p := t.peers[id]
	delete(t.peers, id)
	t.mu.Unlock()
	if p != nil {
		p.close()
	}
}

// Stop implements Transport; it may be called more than once.
func (t *GRPCTransport) Stop() {
	t.mu.Lock()
	peers := t.peers
	t.peers, t.stopped = map[uint64]*peer{}, true
	t.mu.Unlock()
	for _, p := range peers {
		p.close()
	}
}

// Send implements Transport: it marshals each message and queues it for
// its peer, dropping (and reporting) what cannot be queued.
func (t *GRPCTransport) Send(msgs []*pb.Message) {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, m := range msgs {
		to, snap := m.GetTo(), m.GetType() == pb.MessageType_MsgSnap
		p := t.peers[to]
		b, err := proto.Marshal(m)
		switch {
		case p == nil:
			err = errors.New("no address for the member")
		case err == nil && len(b) > t.opts.MaxMessageBytes-wrapOverhead:
			err = fmt.Errorf("message of %d bytes, at most %d", len(b), t.opts.MaxMessageBytes-wrapOverhead)
		}
		if err == nil && !p.enqueue(b, snap) {
			err = errors.New("queue full")
		}
		if err != nil {
			if snap {
				t.log.Warn("raft snapshot not sent", "to", to, "err", err)
			}
			t.reportDrop(to, snap)
		}
	}
}

func (t *GRPCTransport) reportDrop(to uint64, snap bool) {
	if t.r == nil {
		return
	}
	t.r.ReportUnreachable(to)
	if snap {
		t.r.ReportSnapshot(to, true)
	}
}

// peer is the sending side towards one member.
type peer struct {
	t      *GRPCTransport
	id     uint64
	addr   string
	queue  chan []byte
	queued atomic.Int64 // bytes in queue
	snaps  chan []byte
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	connMu sync.Mutex
	conn   *grpc.ClientConn
}

func (t *GRPCTransport) newPeer(id uint64, addr string) *peer {
	ctx, cancel := context.WithCancel(context.Background())
	p := &peer{
		t: t, id: id, addr: addr,
		queue: make(chan []byte, t.opts.PeerQueue),
		// raft sends one snapshot at a time to a follower.
		snaps: make(chan []byte, 1),
		ctx:   ctx, cancel: cancel,
	}
	p.wg.Add(2)
	go p.runMessages()
	go p.runSnapshots()
	return p
}

func (p *peer) enqueue(b []byte, snap bool) bool {
	if snap {
		select {
		case p.snaps <- b:
			return true
		default:
			return false
		}
	}
	if p.queued.Load()+int64(len(b)) > int64(p.t.opts.PeerQueueBytes) {
		return false
	}
	select {
	case p.queue <- b:
		p.queued.Add(int64(len(b)))
		return true
	default:
		return false
	}
}

// take receives the next queued message.
func (p *peer) take() ([]byte, bool) {
	select {
	case <-p.ctx.Done():
		return nil, false
	case b := <-p.queue:
		p.queued.Add(-int64(len(b)))
		return b, true
	}
}

// dropQueued empties the queue and reports how many it dropped.
func (p *peer) dropQueued() (n int) {
	for {
		select {
		case b := <-p.queue:
			p.queued.Add(-int64(len(b)))
			n++
		default:
			return n
		}
	}
}

func (p *peer) close() {
	p.cancel()
	p.wg.Wait()
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.conn != nil {
		p.conn.Close()
		p.conn = nil
	}
}

// client dials the peer on first use; gRPC reconnects it afterwards.
func (p *peer) client() (*grpc.ClientConn, error) {
	p.connMu.Lock()
	defer p.connMu.Unlock()
	if p.conn != nil {
		return p.conn, nil
	}
	opts := []grpc.DialOption{
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: 100 * time.Millisecond, Multiplier: 1.6, Jitter: 0.2, MaxDelay: maxRetry},
			MinConnectTimeout: 5 * time.Second,
		}),
		grpc.WithDefaultCallOptions(grpc.MaxCallSendMsgSize(p.t.opts.MaxMessageBytes)),
		// A connection cut off (a partition, a peer's machine gone) is
		// found dead within PeerKeepalive+PeerKeepaliveTimeout and
		// redialled, rather than left to TCP's retransmission backoff,
		// which after a long cut resumes a minute or more after the
		// network has healed.
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: PeerKeepalive, Timeout: PeerKeepaliveTimeout, PermitWithoutStream: true}),
	}
	conn, err := grpc.NewClient(p.addr, append(opts, p.t.opts.DialOptions...)...)
	if err != nil {
		return nil, fmt.Errorf("raftnode: peer %d at %s: %w", p.id, p.addr, err)
	}
	p.conn = conn
	return conn, nil
}

func (p *peer) openStream() (grpc.ClientStream, error) {
	conn, err := p.client()
	if err != nil {
		return nil, err
	}
	return conn.NewStream(p.ctx, &serviceDesc.Streams[0], sendMethod)
}

// runMessages feeds the peer's long-lived stream from its queue. A
// failed stream drops the message in hand, reports the peer
// unreachable, and is reopened after a growing pause.
func (p *peer) runMessages() {
	defer p.wg.Done()
	var stream grpc.ClientStream
	retry := minRetry
	for {
		b, ok := p.take()
		if !ok {
			return
		}
		var err error
		if stream == nil {
			stream, err = p.openStream()
		}
		if err == nil {
			err = stream.SendMsg(&wrapperspb.BytesValue{Value: b})
			if errors.Is(err, io.EOF) {
				// The server ended the stream; its status says why.
				err = stream.RecvMsg(new(emptypb.Empty))
			}
		}
		if err == nil {
			retry = minRetry
			continue
		}
		stream = nil
		p.t.log.Debug("raft stream to peer failed", "peer", p.id, "addr", p.addr, "err", err)
		p.t.mu.Lock()
		p.t.reportDrop(p.id, false)
		p.t.mu.Unlock()
		select {
		case <-p.ctx.Done():
			return
		case <-time.After(retry):
		}
		// What queued up meanwhile was meant for a peer raft will
		// probe again; it was reported unreachable above.
		p.dropQueued()
		retry = min(2*retry, maxRetry)
	}
}

// runSnapshots sends each snapshot message on a stream of its own and
// reports whether the peer's server took it.
func (p *peer) runSnapshots() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case b := <-p.snaps:
			err := p.sendOne(b)
			if err != nil {
				p.t.log.Warn("raft snapshot send failed", "peer", p.id, "addr", p.addr, "err", err)
			}
			p.t.mu.Lock()
			if p.t.r != nil {
				if err != nil {
					p.t.r.ReportUnreachable(p.id)
				}
				p.t.r.ReportSnapshot(p.id, err != nil)
			}
			p.t.mu.Unlock()
		}
	}
}

func (p *peer) sendOne(b []byte) error {
	stream, err := p.openStream()
	if err != nil {
		return err
	}
	if err := stream.SendMsg(&wrapperspb.BytesValue{Value: b}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.RecvMsg(new(emptypb.Empty))
}
