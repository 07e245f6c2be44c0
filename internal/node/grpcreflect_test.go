package node

import (
	"context"
	"errors"
	"io"
	"slices"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// listServices asks the node's reflection service for its services.
func listServices(ctx context.Context, t *testing.T, s *started) ([]string, error) {
	t.Helper()
	st, err := reflectionpb.NewServerReflectionClient(dial(t, s.addr)).ServerReflectionInfo(ctx)
	if err != nil {
		return nil, err
	}
	defer st.CloseSend()
	if err := st.Send(&reflectionpb.ServerReflectionRequest{
		MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{ListServices: "*"}}); err != nil && !errors.Is(err, io.EOF) {
		return nil, err // io.EOF: the server ended the stream; Recv says why
	}
	resp, err := st.Recv()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, svc := range resp.GetListServicesResponse().GetService() {
		names = append(names, svc.GetName())
	}
	return names, nil
}

// With --grpc-reflection a client with credentials lists the services;
// without credentials it is refused, as for signing.
func TestGRPCReflection(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, GRPCReflection: true,
		UsersFile: writeUsers(t, "alice:secret-a\n")})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	if _, err := listServices(ctx, t, s); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without credentials: %v, want Unauthenticated", err)
	}
	alice := metadata.AppendToOutgoingContext(ctx, "authorization", basicHeader(creds{login: "alice", key: "secret-a"}))
	names, err := listServices(alice, t, s)
	if err != nil {
		t.Fatalf("reflection with credentials: %v", err)
	}
	for _, want := range []string{tempelv1.Signer_ServiceDesc.ServiceName, tempelv1.Extender_ServiceDesc.ServiceName,
		tempelv1.Publications_ServiceDesc.ServiceName, "grpc.reflection.v1.ServerReflection"} {
		if !slices.Contains(names, want) {
			t.Errorf("reflection lists %v, missing %s", names, want)
		}
	}
}

// Without the flag there is no reflection service.
func TestGRPCReflectionOffByDefault(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := listServices(ctx, t, s); status.Code(err) != codes.Unimplemented {
		t.Errorf("reflection on a node without --grpc-reflection: %v, want Unimplemented", err)
	}
}
