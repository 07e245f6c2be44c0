package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// Clients that never read their answers take the node's whole budget
// for their streams; while the budget refuses others, the stream blocked
// longest on its client is ended at once (not after the long send
// timeout), so a new client's stream is taken and answered within
// seconds.
func TestStuckStreamsEvictedWhenOthersAreRefused(t *testing.T) {
	cfg := Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, StreamSendTimeout: time.Minute,
		MaxMemory: RequestBudgetShare * 32 << 20}
	n := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	signer := tempelv1.NewSignerClient(dial(t, n.addr))
	// The stuck clients get a connection of their own with fixed 64 KiB
	// windows. gRPC-Go's default windows grow with measured bandwidth
	// even on a stream nobody reads, so the node's answers would drain
	// into the client's memory and free the budget without any eviction.
	stuckConn, err := grpc.NewClient(n.addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithInitialWindowSize(64<<10), grpc.WithInitialConnWindowSize(64<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer stuckConn.Close()
	stuckSigner := tempelv1.NewSignerClient(stuckConn)
	budget := n.n.agg.Budget()
	// Open streams that send and never read until no more are taken.
	opened := 0
	for ; opened < 32; opened++ {
		stuck, err := stuckSigner.SignBatchStream(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var b tempelv1.SignBatch
		for i := range 2048 {
			b.Requests = append(b.Requests, &tempelv1.SignRequest{Hash: docHash(fmt.Sprint("stuck ", opened, i))})
		}
		if err := stuck.Send(&b); err != nil {
			break
		}
		// A stream refused at open ends at once with its status.
		rctx, rcancel := context.WithTimeout(ctx, 2*time.Second)
		done := make(chan error, 1)
		go func() { _, err := stuck.Recv(); done <- err }()
		var refused bool
		select {
		case err := <-done:
			refused = err != nil
		case <-rctx.Done():
		}
		rcancel()
		if refused {
			break
		}
		go func() {
			for k := 0; stuck.Send(&b) == nil && k < 1000; k++ {
			}
		}()
	}
	t.Logf("%d streams taken; budget %d of %d bytes; %v", opened, budget.Used(), budget.Limit(), budget.Overloaded())
	// A new client's stream is answered within seconds, not a minute.
	begin := time.Now()
	waitFor(t, 30*time.Second, "a new client's stream to be answered", func() bool {
		sctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		defer cancel()
		s, err := signer.SignStream(sctx)
		if err != nil {
			return false
		}
		if s.Send(&tempelv1.SignRequest{RequestId: 1, Hash: docHash("new client")}) != nil {
			return false
		}
		resp, err := s.Recv()
		return err == nil && resp.Status == 0 && len(resp.Signature) > 0
	})
	t.Logf("new client answered after %s", time.Since(begin))
	if ev := testutil.ToFloat64(n.n.metrics.requests.WithLabelValues("grpc-stream", "Sign", "evicted-not-reading")); ev < 1 {
		t.Fatalf("%v stuck streams ended to make room, want at least one", ev)
	}
}
