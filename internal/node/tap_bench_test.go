package node

import (
	"context"
	"net"
	"testing"

	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/tap"

	"github.com/tempel-ksi/tempel/internal/server"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// BenchmarkTapAdmit is the gRPC tap's cost for one Sign call that is
// admitted, in development mode: every call, admitted or refused, pays it
// in the connection's reader before the call has a goroutine.
func BenchmarkTapAdmit(b *testing.B) {
	n := &Node{auth: server.NewAuthenticator(server.AuthConfig{})}
	n.h.admitsSign = admitAll
	md := metadata.MD{"content-type": {"application/grpc"}, "user-agent": {"tempel-bench"}, "te": {"trailers"}}
	ctx := metadata.NewIncomingContext(peer.NewContext(context.Background(),
		&peer.Peer{Addr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 40000}}), md)
	info := &tap.Info{FullMethodName: tempelv1.Signer_Sign_FullMethodName, Header: md}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := n.admit(ctx, info); err != nil {
			b.Fatal(err)
		}
	}
}
