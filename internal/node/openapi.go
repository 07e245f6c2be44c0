package node

import (
	"bytes"
	"net/http"
	"time"

	tempelv1 "github.com/tempel-ksi/tempel/proto/tempel/v1"
)

// serveOpenAPI serves the OpenAPI document of the REST routes. It is
// documentation, public like the publications file. It describes every
// route of the API; a node of one role answers only its role's.
func serveOpenAPI(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "GET only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(tempelv1.OpenAPI))
}
