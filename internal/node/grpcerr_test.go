package node

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"

	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/tempel-ksi/tempel/aggregator"
	"github.com/tempel-ksi/tempel/calendar"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// TestGRPCErrorCodes checks the gRPC code of every service error a caller
// may branch on: quota and overload are RESOURCE_EXHAUSTED, extend ranges
// OUT_OF_RANGE, a stopped or failed service UNAVAILABLE. Each service's
// errors go through its own status table.
func TestGRPCErrorCodes(t *testing.T) {
	for _, tc := range []struct {
		toGRPC func(error) error
		err    error
		want   codes.Code
	}{
		{aggError, aggregator.ErrOverQuota, codes.ResourceExhausted},
		{aggError, aggregator.ErrOverloaded, codes.ResourceExhausted},
		{calError, calendar.ErrOverloaded, codes.ResourceExhausted},
		{aggError, fmt.Errorf("wrapped: %w", aggregator.ErrBadRequest), codes.InvalidArgument},
		{aggError, aggregator.ErrLevelTooHigh, codes.InvalidArgument},
		{aggError, aggregator.ErrUpstreamTime, codes.DeadlineExceeded},
		{aggError, aggregator.ErrUpstream, codes.Unavailable},
		{calError, calendar.ErrFailed, codes.Unavailable},
		{calError, calendar.ErrTimeTooNew, codes.OutOfRange},
		{calError, calendar.ErrBadRange, codes.OutOfRange},
		{calError, calendar.ErrTimeInFuture, codes.OutOfRange},
		{aggError, context.Canceled, codes.Canceled},
		{calError, context.Canceled, codes.Canceled},
		{aggError, errors.New("other"), codes.Internal},
		{calError, errors.New("other"), codes.Internal},
		{calendarSignError, errBadRoot{errors.New("not an imprint")}, codes.InvalidArgument},
		{calendarSignError, calendar.ErrLevelTooHigh, codes.InvalidArgument},
	} {
		if got := status.Code(tc.toGRPC(tc.err)); got != tc.want {
			t.Errorf("%v: %s, want %s", tc.err, got, tc.want)
		}
	}
}

// The HTTP status of each row of the status tables is the one REST
// answers: the one the gateway gives the row's gRPC code, so that REST
// and gRPC callers read the same answer.
func TestStatusTablesHTTP(t *testing.T) {
	errs := []error{aggregator.ErrOverQuota, aggregator.ErrOverloaded, aggregator.ErrBadRequest, aggregator.ErrLevelTooHigh,
		aggregator.ErrUpstreamTime, aggregator.ErrUpstream, aggregator.ErrStopped, context.Canceled, context.DeadlineExceeded,
		errors.New("other"), nil}
	for _, err := range errs {
		if s := aggregator.StatusOf(err); s.HTTP != runtime.HTTPStatusFromCode(s.GRPC) {
			t.Errorf("aggregator %v: HTTP %d, the gateway gives %s %d", err, s.HTTP, s.GRPC, runtime.HTTPStatusFromCode(s.GRPC))
		}
	}
	errs = []error{calendar.ErrOverloaded, calendar.ErrBadRange, calendar.ErrTimeTooOld, calendar.ErrTimeTooNew, calendar.ErrEmpty,
		calendar.ErrTimeInFuture, calendar.ErrCorrupt, calendar.ErrFailed, calendar.ErrStopped, calendar.ErrNotReady,
		context.Canceled, context.DeadlineExceeded, errors.New("other"), nil}
	for _, err := range errs {
		if s := calendar.StatusOf(err); s.HTTP != runtime.HTTPStatusFromCode(s.GRPC) {
			t.Errorf("calendar %v: HTTP %d, the gateway gives %s %d", err, s.HTTP, s.GRPC, runtime.HTTPStatusFromCode(s.GRPC))
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
