package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// TestGRPCErrorCodes checks the gRPC code of every service error a caller
// may branch on: quota and overload are RESOURCE_EXHAUSTED, extend ranges
// OUT_OF_RANGE, a stopped or failed service UNAVAILABLE.
func TestGRPCErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{aggregator.ErrOverQuota, codes.ResourceExhausted},
		{aggregator.ErrOverloaded, codes.ResourceExhausted},
		{calendar.ErrOverloaded, codes.ResourceExhausted},
		{fmt.Errorf("wrapped: %w", aggregator.ErrBadRequest), codes.InvalidArgument},
		{aggregator.ErrLevelTooHigh, codes.InvalidArgument},
		{aggregator.ErrUpstreamTime, codes.DeadlineExceeded},
		{aggregator.ErrUpstream, codes.Unavailable},
		{calendar.ErrFailed, codes.Unavailable},
		{calendar.ErrTimeTooNew, codes.OutOfRange},
		{calendar.ErrBadRange, codes.OutOfRange},
		{context.Canceled, codes.Canceled},
		{errors.New("other"), codes.Internal},
	} {
		if got := status.Code(grpcError(tc.err)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}

// The standard gRPC health check answers without credentials, even when
// the server has a users file, and says SERVING when the node is ready.
func TestGRPCHealth(t *testing.T) {
	users := filepath.Join(t.TempDir(), "users")
	if err := os.WriteFile(users, []byte("alice:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	n := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, UsersFile: users})
	hc := healthpb.NewHealthClient(dial(t, n.addr))
	resp, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("status %v, want SERVING", resp.Status)
	}
	if _, err := hc.Check(context.Background(), &healthpb.HealthCheckRequest{Service: "nope"}); status.Code(err) != codes.NotFound {
		t.Fatalf("unknown service: %v, want NotFound", err)
	}
	// Everything else still needs credentials.
	_, err = tempelv1.NewSignerClient(dial(t, n.addr)).Sign(context.Background(), &tempelv1.SignRequest{Hash: docHash("x")})
	if status.Code(err) != codes.Unauthenticated {
		t.Fatalf("sign without credentials: %v, want Unauthenticated", err)
	}
}
