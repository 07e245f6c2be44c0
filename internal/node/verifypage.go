package node

import (
	"net/http"
	"sync"

	"github.com/tempel-ksi/tempel/internal/webverify/page"
)

// verifyPage serves GET /verify: the browser verifier
// (docs/design/webverify.md), built once with this node's root
// certificate and publisher constraint, and pointed at the node's own
// publications file when the node has a calendar. It is public: it holds
// nothing but what verifiers pin anyway.
func (n *Node) verifyPage() http.Handler {
	var (
		once sync.Once
		body []byte
		err  error
	)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		once.Do(func() {
			var opts page.PageOptions
			if n.keys != nil {
				opts.Root, opts.Constraints = n.keys.RootPEM(), []string{n.keys.Constraint()}
			}
			if n.pub != nil && n.keys != nil {
				opts.PubfileURL = "publications.bin" // beside /verify
			}
			body, err = page.Page(opts)
			if err != nil {
				n.log.Error("cannot build the verify page", "err", err)
			}
		})
		if err != nil {
			http.Error(w, "node: the verify page is not available: "+err.Error(), http.StatusInternalServerError)
			return
		}
		h := w.Header()
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		w.Write(body)
	})
}
