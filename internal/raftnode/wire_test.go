package raftnode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	pb "go.etcd.io/raft/v3/raftpb"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// sendRaw sends one value on a raft Send stream and returns the
// stream's outcome.
func sendRaw(t *testing.T, conn *grpc.ClientConn, value []byte) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	stream, err := conn.NewStream(ctx, &serviceDesc.Streams[0], sendMethod)
	if err != nil {
		return err
	}
	if err := stream.SendMsg(&wrapperspb.BytesValue{Value: value}); err != nil && !errors.Is(err, io.EOF) {
		return err
	}
	if err := stream.CloseSend(); err != nil {
		return err
	}
	return stream.RecvMsg(new(emptypb.Empty))
}

func marshal(t *testing.T, m *pb.Message) []byte {
	t.Helper()
	b, err := proto.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Bad bytes and misaddressed messages on the raft service end the
// stream with a clear status; the member goes on unharmed.
func TestBadBytesOnTheWire(t *testing.T) {
	c := newCluster(t, 3, nil)
	m := c.members[0]
	c.leaderOf(c.members)
	conn, err := grpc.NewClient(m.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	msg := func(typ pb.MessageType, from, to uint64) []byte {
		return marshal(t, &pb.Message{Type: typ.Enum(), From: new(from), To: new(to)})
	}
	good := msg(pb.MessageType_MsgHeartbeatResp, 2, 1)
	for _, tc := range []struct {
		name  string
		value []byte
		code  codes.Code
		want  string
	}{
		{"garbage", []byte{0xff, 0xff, 0xff, 0xff}, codes.InvalidArgument, "not a raft message"},
		{"truncated", good[:len(good)-1], codes.InvalidArgument, "not a raft message"},
		{"another member's", msg(pb.MessageType_MsgHeartbeatResp, 2, 9), codes.InvalidArgument, "not addressed to this member"},
		{"from nobody", msg(pb.MessageType_MsgHeartbeatResp, 0, 1), codes.InvalidArgument, "from member 0"},
		{"a proposal", msg(pb.MessageType_MsgProp, 2, 1), codes.InvalidArgument, "refused from the network"},
		{"a local message", msg(pb.MessageType_MsgHup, 2, 1), codes.InvalidArgument, "refused from the network"},
		{"too large", make([]byte, DefaultMaxMessageBytes-8), codes.ResourceExhausted, "raftnode: raft message of"},
		{"too large for gRPC", make([]byte, DefaultMaxMessageBytes+1), codes.ResourceExhausted, ""},
		{"an unknown member's", msg(pb.MessageType_MsgHeartbeatResp, 7, 1), codes.InvalidArgument, "not a member known here"},
		{"a good one", good, codes.OK, ""},
	} {
		err := sendRaw(t, conn, tc.value)
		if got := status.Code(err); got != tc.code || !strings.Contains(fmt.Sprint(err), tc.want) {
			t.Errorf("%s: %v, want %v with %q", tc.name, err, tc.code, tc.want)
		}
	}
	if err := m.node.Err(); err != nil {
		t.Fatal(err)
	}
	c.proposeAll(c.members, keys("w", 0, 5))
}

// A member whose state machine is ahead of its raft log (the log was
// lost) is refused at start; so are configurations that cannot work.
func TestStartRefuses(t *testing.T) {
	sm := newToySM()
	sm.applied = 100
	tr := NewGRPCTransport(GRPCOptions{})
	_, err := Start(Config{ID: 1, Peers: map[uint64]string{1: "127.0.0.1:1"}, Dir: t.TempDir(), StateMachine: sm, Transport: tr})
	if err == nil || !strings.Contains(err.Error(), "rejoin") {
		t.Fatalf("machine ahead of an empty log: %v", err)
	}
	for _, cfg := range []Config{
		{ID: 0, Peers: map[uint64]string{1: "a"}, Dir: t.TempDir(), StateMachine: newToySM(), Transport: tr},
		{ID: 2, Peers: map[uint64]string{1: "a"}, Dir: t.TempDir(), StateMachine: newToySM(), Transport: tr},
		{ID: 1, Peers: map[uint64]string{1: "a"}, StateMachine: newToySM(), Transport: tr},
		{ID: 1, Peers: map[uint64]string{1: "a"}, Dir: t.TempDir(), Transport: tr},
		{ID: 1, Peers: map[uint64]string{1: "a"}, Dir: t.TempDir(), StateMachine: newToySM(), Transport: tr, ElectionTick: 2, HeartbeatTick: 2},
		{ID: 1, Peers: map[uint64]string{1: "a", 2: ""}, Dir: t.TempDir(), StateMachine: newToySM(), Transport: tr},
		{ID: 1, Peers: map[uint64]string{1: "a", 0: "b"}, Dir: t.TempDir(), StateMachine: newToySM(), Transport: tr},
		{ID: 1, Peers: map[uint64]string{1: "a"}, Dir: t.TempDir(), StateMachine: newToySM(), Transport: tr, MaxProposalBytes: 2 << 20},
	} {
		if n, err := Start(cfg); err == nil {
			n.Stop()
			t.Errorf("config %+v accepted", cfg)
		}
	}
}

// A message that decodes but breaks raft's invariants (a heartbeat
// committing past the follower's log, as only a broken or hostile member
// sends) stops that member with an error: raft's panic is caught in the
// Ready loop, the process goes on, and the member never continues.
func TestHostileMessageStopsMember(t *testing.T) {
	c := newCluster(t, 3, nil)
	l := c.leaderOf(c.members)
	f := c.others(l)[0]
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	term := f.node.Status().Term
	hb := marshal(t, &pb.Message{Type: pb.MessageType_MsgHeartbeat.Enum(), From: new(l.id), To: new(f.id),
		Term: new(term), Commit: new(uint64(1 << 40))})
	if err := sendRaw(t, conn, hb); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.node.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the member did not stop")
	}
	if err := f.node.Err(); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("Err %v", err)
	}
	f.srv.Stop()
	if err := f.node.Stop(); err != nil {
		t.Fatal(err)
	}
	f.node = nil
	c.proposeAll(c.others(f), keys("h", 0, 5))
}
