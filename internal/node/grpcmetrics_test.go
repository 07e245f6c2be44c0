package node

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/emptypb"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// The standard gRPC server metrics count a Sign call by service, method,
// type and code, time it in the histogram, start every method's series at
// zero, and do not grow with method names a caller invents.
func TestGRPCServerMetrics(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour})
	conn := dial(t, s.addr)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := tempelv1.NewSignerClient(conn).Sign(ctx, &tempelv1.SignRequest{Hash: docHash("grpc metrics")}); err != nil {
		t.Fatal(err)
	}
	err := conn.Invoke(ctx, "/tempel.v1.Signer/Invented", &emptypb.Empty{}, &emptypb.Empty{})
	if status.Code(err) != codes.Unimplemented {
		t.Fatalf("invented method: %v, want Unimplemented", err)
	}
	m := metricsText(t, s)
	const sign = `grpc_method="Sign",grpc_service="tempel.v1.Signer",grpc_type="unary"`
	for _, want := range []string{
		`grpc_server_started_total{` + sign + `} 1`,
		`grpc_server_handled_total{grpc_code="OK",` + sign + `} 1`,
		`grpc_server_handling_seconds_count{` + sign + `} 1`,
		`grpc_server_handling_seconds_bucket{` + sign + `,le="10"} 1`,
		`grpc_server_handled_total{grpc_code="OK",grpc_method="SignStream",grpc_service="tempel.v1.Signer",grpc_type="bidi_stream"} 0`,
		`grpc_server_handled_total{grpc_code="ResourceExhausted",` + sign + `} 0`,
	} {
		if !strings.Contains(m, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	if strings.Contains(m, "Invented") {
		t.Error("an invented method name grew the gRPC metrics")
	}
}
