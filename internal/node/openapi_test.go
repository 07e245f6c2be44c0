package node

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
)

// /openapi.json serves the committed OpenAPI document without
// credentials, even where signing needs them, and it describes every REST
// route the gateway serves.
func TestOpenAPIDocument(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, UsersFile: writeUsers(t, "alice:secret-a\n")})
	body := getPublic(t, s, "/openapi.json", "application/json")
	var doc struct {
		Swagger string                     `json:"swagger"`
		Paths   map[string]json.RawMessage `json:"paths"`
	}
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatalf("the document is not JSON: %v", err)
	}
	if doc.Swagger != "2.0" {
		t.Errorf("swagger %q, want 2.0", doc.Swagger)
	}
	for p := range gatewayRoutes(t) {
		if _, ok := doc.Paths[p]; !ok {
			t.Errorf("the document does not describe %s (it has %v)", p, doc.Paths)
		}
	}

	req, err := http.NewRequest(http.MethodPost, "http://"+s.addr+"/openapi.json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	r, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /openapi.json: %s, want 405", r.Status)
	}
}

// getPublic GETs path from the node without credentials and returns the
// body, failing unless the answer is 200 with Content-Type ctype.
func getPublic(t *testing.T, s *started, path, ctype string) []byte {
	t.Helper()
	r, err := http.Get("http://" + s.addr + path)
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(r.Body)
	r.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	if r.StatusCode != http.StatusOK {
		t.Fatalf("GET %s without credentials: %s %.200s", path, r.Status, body)
	}
	if ct := r.Header.Get("Content-Type"); ct != ctype {
		t.Errorf("GET %s: Content-Type %q, want %q", path, ct, ctype)
	}
	return body
}
