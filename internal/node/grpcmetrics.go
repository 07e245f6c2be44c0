package node

import (
	grpcprom "github.com/grpc-ecosystem/go-grpc-middleware/providers/prometheus"
	"github.com/prometheus/client_golang/prometheus"
)

// grpcLatencyBuckets are the bounds, in seconds, of
// grpc_server_handling_seconds: a signature waits for its round (100 ms
// by default) and, in a hierarchy, for the rounds above it, so the
// buckets are fine around a few rounds and coarse beyond.
var grpcLatencyBuckets = []float64{.005, .01, .025, .05, .1, .15, .2, .3, .5, 1, 2.5, 5, 10}

// newGRPCMetrics registers the standard gRPC server metrics
// (grpc_server_started_total, grpc_server_handled_total,
// grpc_server_handling_seconds, ...) on reg, so that the usual gRPC
// dashboards and alerts work beside Tempel's own metrics. Their labels
// are service, method, type and code: the server answers an unknown
// method before any interceptor runs, so callers cannot grow them.
func newGRPCMetrics(reg prometheus.Registerer) *grpcprom.ServerMetrics {
	m := grpcprom.NewServerMetrics(grpcprom.WithServerHandlingTimeHistogram(
		grpcprom.WithHistogramBuckets(grpcLatencyBuckets)))
	reg.MustRegister(m)
	return m
}
