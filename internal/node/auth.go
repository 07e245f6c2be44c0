package node

import (
	"encoding/json"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/tempel-ksi/tempel/internal/server"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// The access table: who may call what, for every interface. It is the one
// place that says what is public; [accessOf] reads it for the gRPC
// interceptors, the HTTP middleware and the PDU handlers alike.
//
// Public (no credentials; credentials sent are not looked at):
//   - the publications file and the data it holds: GET /publications.bin,
//     the gRPC Publications service and REST GET /v1/publications;
//   - health: /healthz, /readyz and the gRPC health service;
//   - the API's documentation: GET /openapi.json;
//   - the browser verifier: GET /verify.
//
// Everything else needs the credentials of a user (Basic; none in
// development mode): signing and extending over gRPC and REST, the
// calendar head, /metrics. KSI PDU requests are authenticated by their
// HMAC. A route or method missing from the table needs credentials.
var (
	publicServices = map[string]bool{
		healthpb.Health_ServiceDesc.ServiceName:       true,
		tempelv1.Publications_ServiceDesc.ServiceName: true,
	}
	// httpRoutes are the HTTP paths the node serves. A REST route names
	// the gRPC method the gateway calls and has that method's access.
	httpRoutes = map[string]httpRoute{
		"/publications.bin":    {iface: server.IfaceHTTP, access: server.Public},
		"/openapi.json":        {iface: server.IfaceHTTP, access: server.Public}, // documentation (openapi.go)
		"/verify":              {iface: server.IfaceHTTP, access: server.Public}, // the browser verifier (verifypage.go)
		"/healthz":             {iface: server.IfaceHTTP, access: server.Public},
		"/readyz":              {iface: server.IfaceHTTP, access: server.Public},
		"/metrics":             {iface: server.IfaceHTTP, access: server.NeedCredentials},
		"/tsa":                 {iface: server.IfaceHTTP, access: server.NeedCredentials}, // RFC 3161 (tsa.go)
		"/gt-signingservice":   {iface: server.IfacePDU, access: server.NeedHMAC},
		"/gt-extendingservice": {iface: server.IfacePDU, access: server.NeedHMAC},
		"/v1/sign":             {iface: server.IfaceREST, grpcMethod: tempelv1.Signer_Sign_FullMethodName},
		"/v1/extend":           {iface: server.IfaceREST, grpcMethod: tempelv1.Extender_Extend_FullMethodName},
		"/v1/calendar/head":    {iface: server.IfaceREST, grpcMethod: tempelv1.Extender_GetCalendarHead_FullMethodName},
		"/v1/publications":     {iface: server.IfaceREST, grpcMethod: tempelv1.Publications_ListPublications_FullMethodName},
	}
)

type httpRoute struct {
	iface      string
	access     server.Access
	grpcMethod string // REST routes
}

// accessOf classifies a gRPC method (iface grpc) or an HTTP path.
func accessOf(iface, route string) server.Access {
	if iface == server.IfaceGRPC {
		svc, _, _ := strings.Cut(strings.TrimPrefix(route, "/"), "/")
		if publicServices[svc] {
			return server.Public
		}
		return server.NeedCredentials
	}
	r, ok := httpRoutes[route]
	switch {
	case !ok || r.iface != iface:
		return server.NeedCredentials
	case r.grpcMethod != "":
		return accessOf(server.IfaceGRPC, r.grpcMethod)
	}
	return r.access
}

// authHTTP is the one middleware in front of every HTTP route: it
// authenticates the request through n.auth and hands the caller's
// identity to the handler (the gateway passes it on to the services).
// PDU routes go through: their handler authenticates the PDU's HMAC
// through n.auth as well.
func (n *Node) authHTTP(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iface := server.IfaceHTTP
		if rt, ok := httpRoutes[r.URL.Path]; ok {
			iface = rt.iface
		}
		if n.auth.Access(iface, r.URL.Path) == server.NeedHMAC {
			next.ServeHTTP(w, r)
			return
		}
		id, err := n.auth.Authenticate(server.AuthRequest{Interface: iface, Route: r.URL.Path, Remote: r.RemoteAddr,
			Authorization: r.Header.Values("Authorization")})
		if err != nil {
			n.metrics.count(iface, routeLabel(r.URL.Path), "401")
			refuseHTTP(w, iface, err)
			return
		}
		next.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id.Login, r.Header.Values("X-Tempel-Machine-Id"))))
	})
}

// refuseHTTP answers 401, as JSON in the gateway's error format for REST.
func refuseHTTP(w http.ResponseWriter, iface string, err error) {
	w.Header().Set("WWW-Authenticate", `Basic realm="tempel"`)
	if iface != server.IfaceREST {
		http.Error(w, err.Error(), http.StatusUnauthorized)
		return
	}
	b, _ := json.Marshal(struct {
		Code    codes.Code `json:"code"`
		Message string     `json:"message"`
		Details []any      `json:"details"`
	}{codes.Unauthenticated, err.Error(), []any{}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusUnauthorized)
	w.Write(b)
}

// newAuthenticator builds the node's one authentication path. Refusals
// are logged (rate-limited) and counted (all of them).
func (n *Node) newAuthenticator() *server.Authenticator {
	refused := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tempel_auth_refused_total",
		Help: "Requests refused by authentication, by interface (grpc, rest, pdu, http) and reason.",
	}, []string{"interface", "reason"})
	n.reg.MustRegister(refused)
	if n.cfg.PDUAllowWeakHMAC {
		n.log.Warn("KSI PDU HMACs weaker than SHA-256 are accepted (--pdu-allow-weak-hmac)")
	}
	return server.NewAuthenticator(server.AuthConfig{Users: n.users, Access: accessOf,
		AllowWeakHMAC: n.cfg.PDUAllowWeakHMAC, Log: server.NewAuthLog(n.log, 0),
		Refused: func(iface, reason string) { refused.WithLabelValues(iface, reason).Inc() }})
}

// routeMux is an http.ServeMux that remembers its patterns, so that a test
// can check every route the node serves against the access table.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func newRouteMux() *routeMux { return &routeMux{ServeMux: http.NewServeMux()} }

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.Handle(pattern, http.HandlerFunc(h))
}
