package node

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/tempel-ksi/tempel/ksi"
	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// maxRESTBody bounds REST request bodies; a sign or extend request is a
// few hundred bytes.
const maxRESTBody = 64 << 10

// httpHandler serves REST (through the gateway, in process), KSI PDU v2,
// the publications file, metrics and health on one mux, behind the one
// authentication middleware.
func (n *Node) httpHandler(ctx context.Context) (http.Handler, error) {
	mux, err := n.httpMux(ctx)
	if err != nil {
		return nil, err
	}
	return n.authHTTP(mux), nil
}

func (n *Node) httpMux(ctx context.Context) (*routeMux, error) {
	// REST callers are authenticated by authHTTP in front of the mux,
	// which puts their identity in the request's context: the gateway
	// calls the services in process with it.
	gw := runtime.NewServeMux(runtime.WithErrorHandler(restError))
	if err := tempelv1.RegisterSignerHandlerServer(ctx, gw, n.h.signerSvc); err != nil {
		return nil, err
	}
	for _, register := range n.h.rest {
		if err := register(ctx, gw); err != nil {
			return nil, err
		}
	}
	mux := newRouteMux()
	rest := n.metrics.countHTTP("rest", gw)
	mux.Handle("/v1/", http.MaxBytesHandler(rest, maxRESTBody))
	mux.Handle("POST /v1/sign", http.MaxBytesHandler(imprintText(rest), maxRESTBody))
	for _, s := range n.h.pdu {
		mux.Handle(s.Route, n.metrics.countHTTP("pdu", s.Endpoint))
	}
	for _, r := range n.h.routes {
		mux.Handle(r.pattern, r.h)
	}
	mux.Handle("/metrics", promhttp.HandlerFor(n.reg, promhttp.HandlerOpts{Registry: n.reg}))
	mux.HandleFunc("/openapi.json", serveOpenAPI)
	mux.Handle("GET /verify", n.verifyPage())
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := n.ready(); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		w.Write([]byte("ready\n"))
	})
	return mux, nil
}

// servePublicationsFile serves the signed publications file with an ETag,
// so verifiers can poll it cheaply.
func (n *Node) servePublicationsFile(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	file, etag := n.pub.File()
	w.Header().Set("ETag", etag)
	w.Header().Set("Cache-Control", "no-cache")
	if match := r.Header.Get("If-None-Match"); match != "" && strings.Contains(match, etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="publications.bin"`)
	w.Write(file)
}

// imprintText lets REST callers write the hash as ksi-tool does,
// "SHA-256:<hex>", besides the base64 imprint of the JSON mapping: it
// rewrites such a hash to base64 before the gateway reads the body.
func imprintText(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, "request body too large or unreadable", http.StatusRequestEntityTooLarge)
			return
		}
		var m map[string]json.RawMessage
		if json.Unmarshal(body, &m) == nil {
			var h string
			if json.Unmarshal(m["hash"], &h) == nil && strings.Contains(h, ":") {
				imp, err := ksi.ParseImprintText(h)
				if err != nil {
					http.Error(w, `{"code":3,"message":"hash: `+strings.ReplaceAll(err.Error(), `"`, `'`)+`"}`, http.StatusBadRequest)
					return
				}
				m["hash"], _ = json.Marshal(base64.StdEncoding.EncodeToString(imp))
				body, _ = json.Marshal(m)
			}
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		next.ServeHTTP(w, r)
	})
}
