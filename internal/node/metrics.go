package node

import (
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// requestMetrics counts requests by interface (grpc, grpc-stream, rest,
// pdu, ksi-tcp, http), method and status (gRPC code, KSI status or HTTP
// status; a ksi+tcp PDU by the HTTP status its answer has over HTTP).
type requestMetrics struct {
	requests *prometheus.CounterVec
}

func newRequestMetrics(reg prometheus.Registerer) *requestMetrics {
	m := &requestMetrics{requests: prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tempel_requests_total",
		Help: "Requests by interface (grpc, grpc-stream, rest, pdu, ksi-tcp, http), method and status.",
	}, []string{"interface", "method", "status"})}
	reg.MustRegister(m.requests)
	return m
}

func (m *requestMetrics) count(iface, method, status string) {
	m.countN(iface, method, status, 1)
}

// countN counts n requests that ended alike.
func (m *requestMetrics) countN(iface, method, status string, n int) {
	if n > 0 {
		m.requests.WithLabelValues(iface, method, status).Add(float64(n))
	}
}

// statusRecorder remembers the HTTP status a handler wrote.
type statusRecorder struct {
	http.ResponseWriter
	code int
}

func (s *statusRecorder) WriteHeader(code int) {
	s.code = code
	s.ResponseWriter.WriteHeader(code)
}

// countHTTP counts each request of h by its route and HTTP status.
func (m *requestMetrics) countHTTP(iface string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, code: http.StatusOK}
		h.ServeHTTP(rec, r)
		m.count(iface, routeLabel(r.URL.Path), strconv.Itoa(rec.code))
	})
}

// routeLabel is the method label of an HTTP path: its last element for a
// route the node serves, "unknown" for any other, so that callers cannot
// grow the metrics by inventing paths.
func routeLabel(p string) string {
	if _, ok := httpRoutes[p]; ok {
		return path.Base(p)
	}
	return "unknown"
}

// grpcMethodLabel is the method label of a gRPC method name as a caller
// sent it: the method for one the node serves, "unknown" for any other
// (the tap sees names before the server has checked them).
func grpcMethodLabel(full string) string {
	svc, m, _ := strings.Cut(strings.TrimPrefix(full, "/"), "/")
	for _, d := range []*grpc.ServiceDesc{&tempelv1.Signer_ServiceDesc, &tempelv1.Extender_ServiceDesc,
		&tempelv1.Publications_ServiceDesc, &healthpb.Health_ServiceDesc} {
		if d.ServiceName != svc {
			continue
		}
		for _, x := range d.Methods {
			if x.MethodName == m {
				return m
			}
		}
		for _, x := range d.Streams {
			if x.StreamName == m {
				return m
			}
		}
	}
	return "unknown"
}
