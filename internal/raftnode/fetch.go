package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// A state machine whose state is too large for a raft message (a
// calendar of years of seconds) puts only a description of it in its
// snapshots. A member restoring such a snapshot fetches the state it
// lacks from a peer that has it, over the same connection and
// authentication as raft messages: the method Fetch of the raft service,
// one request in, a stream of parts out.

// Fetcher reaches the other members' state machines during a restore.
type Fetcher interface {
	// Peers lists the other members to fetch from, the leader first.
	Peers() []uint64
	// Fetch sends req to member id's state machine and passes each part
	// of its answer to recv, in order. It returns nil when the answer is
	// complete, recv's error if recv fails, or the stream's.
	Fetch(ctx context.Context, id uint64, req []byte, recv func(part []byte) error) error
}

// PeerRestorer is a StateMachine whose snapshots describe state that a
// restoring member fetches from peers: the member calls RestoreFrom
// instead of Restore.
type PeerRestorer interface {
	RestoreFrom(ctx context.Context, index uint64, data []byte, peers Fetcher) error
}

// FetchServer is a StateMachine that answers its peers' fetches. It is
// called from the transport's goroutines, concurrently with Apply, and
// each part it sends must stay below Config.MaxMessageBytes.
type FetchServer interface {
	ServeFetch(ctx context.Context, req []byte, send func(part []byte) error) error
}

// fetchTransport is a Transport that can carry fetches.
type fetchTransport interface {
	Fetch(ctx context.Context, id uint64, req []byte, recv func([]byte) error) error
}

// DefaultFetchServers bounds the fetches a member serves at once; more
// are refused (ResourceExhausted) and the fetching member tries another
// peer or again later.
const DefaultFetchServers = 2

const fetchMethod = "/" + ServiceName + "/Fetch"

var fetchDesc = grpc.StreamDesc{StreamName: "Fetch", Handler: fetchStream, ServerStreams: true}

// peerFetcher is the Fetcher a member hands its state machine for one
// restore; lead is the leader the Ready loop knew then (0 if none).
type peerFetcher struct {
	n    *Node
	lead uint64
}

func (f peerFetcher) Peers() []uint64 {
	n := f.n
	n.mu.Lock()
	ids := make([]uint64, 0, len(n.peers))
	for id := range n.peers {
		if id != n.id && id != f.lead {
			ids = append(ids, id)
		}
	}
	n.mu.Unlock()
	slices.Sort(ids)
	if f.lead != 0 && f.lead != n.id {
		ids = append([]uint64{f.lead}, ids...)
	}
	return ids
}

func (f peerFetcher) Fetch(ctx context.Context, id uint64, req []byte, recv func([]byte) error) error {
	ft, ok := f.n.tr.(fetchTransport)
	if !ok {
		return errors.New("raftnode: the transport cannot fetch from peers")
	}
	return ft.Fetch(ctx, id, req, recv)
}

// restoreMachine restores the state machine from a snapshot's data,
// through RestoreFrom when it fetches from peers. A restore is stopped
// by Stop.
func (n *Node) restoreMachine(index uint64, data []byte) error {
	n.restoring.Store(true)
	defer n.restoring.Store(false)
	pr, ok := n.sm.(PeerRestorer)
	if !ok {
		return n.sm.Restore(index, data)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-n.stop:
			cancel()
		case <-ctx.Done():
		}
	}()
	err := pr.RestoreFrom(ctx, index, data, peerFetcher{n: n, lead: n.lead})
	if err != nil && ctx.Err() != nil {
		return errStopping
	}
	return err
}

// errStopping ends a restore cut short by Stop: not a fatal error.
var errStopping = errors.New("raftnode: stopping")

// serveFetch answers a peer's fetch from the state machine, at most
// DefaultFetchServers at once.
func (n *Node) serveFetch(ctx context.Context, req []byte, send func([]byte) error) error {
	fs, ok := n.sm.(FetchServer)
	if !ok {
		return status.Error(codes.Unimplemented, "raftnode: this member's state machine serves no fetches")
	}
	select {
	case n.fetching <- struct{}{}:
		defer func() { <-n.fetching }()
	default:
		return status.Errorf(codes.ResourceExhausted, "raftnode: already serving %d fetches", cap(n.fetching))
	}
	err := fs.ServeFetch(ctx, req, send)
	if err == nil {
		n.fetchesServed.Add(1)
	}
	return err
}

// fetchStream is the server side of Fetch: one request, then the parts.
func fetchStream(srv any, stream grpc.ServerStream) error {
	r := srv.(raftReceiver)
	in := new(wrapperspb.BytesValue)
	if err := stream.RecvMsg(in); err != nil {
		return err
	}
	if limit := r.maxMessage() - wrapOverhead; len(in.GetValue()) > limit {
		return status.Errorf(codes.ResourceExhausted, "raftnode: fetch request of %d bytes, at most %d", len(in.GetValue()), limit)
	}
	err := r.serveFetch(stream.Context(), in.GetValue(), func(part []byte) error {
		return stream.SendMsg(&wrapperspb.BytesValue{Value: part})
	})
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok {
		return err
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return status.FromContextError(err).Err()
	}
	return status.Error(codes.FailedPrecondition, err.Error())
}

// Fetch implements fetching for the gRPC transport, on the peer's
// connection.
func (t *GRPCTransport) Fetch(ctx context.Context, id uint64, req []byte, recv func([]byte) error) error {
	t.mu.Lock()
	p := t.peers[id]
	t.mu.Unlock()
	if p == nil {
		return fmt.Errorf("raftnode: no address for member %d", id)
	}
	conn, err := p.client()
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := conn.NewStream(ctx, &fetchDesc, fetchMethod, grpc.MaxCallRecvMsgSize(t.opts.MaxMessageBytes))
	if err != nil {
		return err
	}
	if err := stream.SendMsg(&wrapperspb.BytesValue{Value: req}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	for {
		in := new(wrapperspb.BytesValue)
		err := stream.RecvMsg(in)
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return err
		}
		if err := recv(in.GetValue()); err != nil {
			return err
		}
	}
}

// Fetch passes fetches through to the inner transport; a partitioned
// member reaches nobody.
func (f *FaultTransport) Fetch(ctx context.Context, id uint64, req []byte, recv func([]byte) error) error {
	ft, ok := f.inner.(fetchTransport)
	if !ok {
		return errors.New("raftnode: the transport cannot fetch from peers")
	}
	f.mu.Lock()
	cut := f.dropAll || f.cut[id]
	f.mu.Unlock()
	if cut {
		return fmt.Errorf("raftnode: member %d unreachable (fault injected)", id)
	}
	return ft.Fetch(ctx, id, req, recv)
}
