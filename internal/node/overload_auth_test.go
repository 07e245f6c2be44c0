package node

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// With the budget full, a caller with wrong or no credentials is told
// that, not that the node is overloaded, and holds nothing of the budget;
// a user's call is refused for the overload.
func TestOverloadedNodeRefusesBadCredentialsFirst(t *testing.T) {
	const parked = 20
	n, ctx := manualNode(t, Config{MaxMemory: RequestBudgetShare * parked * aggregator.CostCaller,
		UsersFile: writeUsers(t, "alice:secret-a\n")})
	addr := serveManual(t, n, ctx)
	signer := tempelv1.NewSignerClient(dial(t, addr))
	as := func(c creds) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", basicHeader(c))
	}
	alice := as(creds{login: "alice", key: "secret-a"})
	errs := make(chan error, parked)
	for i := range parked {
		go func() {
			_, err := signer.Sign(alice, &tempelv1.SignRequest{Hash: docHash(fmt.Sprint("parked ", i))})
			errs <- err
		}()
	}
	waitFor(t, 10*time.Second, "the budget to fill", func() bool { return n.agg.Budget().Used() == n.agg.Budget().Limit() })

	for _, tc := range []struct {
		name string
		ctx  context.Context
		want codes.Code
	}{
		{"no credentials", ctx, codes.Unauthenticated},
		{"wrong key", as(creds{login: "alice", key: "wrong"}), codes.Unauthenticated},
		{"unknown login", as(creds{login: "mallory", key: "x"}), codes.Unauthenticated},
		{"user", alice, codes.ResourceExhausted},
	} {
		_, err := signer.Sign(tc.ctx, &tempelv1.SignRequest{Hash: docHash("refused")})
		if status.Code(err) != tc.want {
			t.Errorf("%s: %v, want %s", tc.name, err, tc.want)
		}
		st, err := signer.SignStream(tc.ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := st.Recv(); tc.want == codes.Unauthenticated && status.Code(err) != tc.want {
			t.Errorf("%s, stream: %v, want %s", tc.name, err, tc.want)
		}
		if used := n.agg.Budget().Used(); used != n.agg.Budget().Limit() {
			t.Fatalf("%s: budget %d in use, want exactly the parked calls' %d", tc.name, used, n.agg.Budget().Limit())
		}
	}
	n.agg.CloseRound(ctx)
	for range parked {
		if err := <-errs; err != nil {
			t.Fatalf("parked call: %v", err)
		}
	}
	waitFor(t, 10*time.Second, "the budget to empty", func() bool { return n.agg.Budget().Used() == 0 })
}

// A call with wrong credentials is refused before its message is read (a
// message over the size limit is refused as unauthenticated), and the
// methods a caller invents are refused alike and counted under one label.
func TestUnauthenticatedCallRefusedBeforeItsMessage(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, UsersFile: writeUsers(t, "alice:secret-a\n")})
	conn := dial(t, s.addr)
	ctx := metadata.AppendToOutgoingContext(context.Background(), "authorization", basicHeader(creds{login: "alice", key: "wrong"}))
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	_, err := tempelv1.NewSignerClient(conn).Sign(ctx, &tempelv1.SignRequest{Hash: make([]byte, 2*maxMessage)})
	if status.Code(err) != codes.Unauthenticated {
		t.Errorf("oversized message with wrong credentials: %v, want Unauthenticated", err)
	}
	for i := range 20 {
		err := conn.Invoke(ctx, fmt.Sprintf("/made.Up/M%d", i), &tempelv1.SignRequest{}, &tempelv1.SignResponse{})
		if status.Code(err) != codes.Unauthenticated {
			t.Fatalf("invented method with wrong credentials: %v, want Unauthenticated", err)
		}
	}
	if v := counterValue(t, s, `tempel_requests_total{interface="grpc",method="unknown",status="Unauthenticated"}`); v != 20 {
		t.Errorf("invented methods counted %v times under unknown, want 20", v)
	}
}
