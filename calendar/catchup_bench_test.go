package calendar

import (
	"context"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/tempel-ksi/tempel/internal/pki"
	"github.com/tempel-ksi/tempel/internal/raftnode"
)

// grpcPeers fetches from one member through the raft transport.
type grpcPeers struct{ tr *raftnode.GRPCTransport }

func (p grpcPeers) Peers() []uint64 { return []uint64{1} }
func (p grpcPeers) Fetch(ctx context.Context, id uint64, req []byte, recv func([]byte) error) error {
	return p.tr.Fetch(ctx, id, req, recv)
}

type noReports struct{}

func (noReports) ReportUnreachable(uint64)    {}
func (noReports) ReportSnapshot(uint64, bool) {}

// BenchmarkRestore30Days restores the snapshot of a 30-day calendar
// (2,592,000 seconds, a publication a day) into a wiped member: the
// leaves and records fetched over gRPC on loopback from a member's raft
// service, the tree rebuilt and stored in Pebble, the root and the
// publications file checked. Target (issue 13): under 5 minutes.
func BenchmarkRestore30Days(b *testing.B) {
	const days, day = 30, 86_400
	now := time.Unix(1_800_000_000, 0)
	start := uint64(now.Unix()) - days*day
	sets, err := pki.InitMembers(filepath.Join(b.TempDir(), "keys"), 2, pki.InitOptions{})
	if err != nil {
		b.Fatal(err)
	}
	src := newCatchupMember(b, sets[0], &now, 0, nil)
	src.pub.cfg.Period = 24 * time.Hour
	for d := uint64(0); d < days; d++ {
		src.append(b, start+d*day, leavesFor(d*day, day), true)
		src.publish(b)
	}
	data, err := src.svc.Snapshot()
	if err != nil {
		b.Fatal(err)
	}

	// The source member's raft service on a real gRPC server.
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	n, err := raftnode.Start(raftnode.Config{ID: 1, Peers: map[uint64]string{1: lis.Addr().String()}, Dir: filepath.Join(b.TempDir(), "raft"),
		StateMachine: src.svc, Transport: raftnode.NewGRPCTransport(raftnode.GRPCOptions{}), TickInterval: 10 * time.Millisecond})
	if err != nil {
		b.Fatal(err)
	}
	defer n.Stop()
	srv := grpc.NewServer(grpc.MaxRecvMsgSize(raftnode.DefaultMaxMessageBytes), grpc.KeepaliveEnforcementPolicy(raftnode.KeepaliveEnforcement))
	raftnode.RegisterServer(srv, n)
	go srv.Serve(lis)
	defer srv.Stop()

	tr := raftnode.NewGRPCTransport(raftnode.GRPCOptions{DialOptions: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())}})
	if err := tr.Start(2, noReports{}); err != nil {
		b.Fatal(err)
	}
	defer tr.Stop()
	tr.AddPeer(1, lis.Addr().String())

	b.ResetTimer()
	for b.Loop() {
		b.StopTimer()
		dst := newCatchupMember(b, sets[1], &now, 0, nil)
		b.StartTimer()
		began := time.Now()
		if err := dst.svc.RestoreFrom(context.Background(), 1, data, grpcPeers{tr}); err != nil {
			b.Fatal(err)
		}
		took := time.Since(began)
		b.ReportMetric(took.Seconds(), "s/30days")
		b.ReportMetric(float64(days*day)/took.Seconds(), "seconds/s")
		b.StopTimer()
		if got := len(dst.pub.Publications()); got != days {
			b.Fatalf("%d publications restored, want %d", got, days)
		}
		b.StartTimer()
	}
}
