package node

import (
	"html"
	"net/http"
	"strings"
	"testing"
	"time"
)

// GET /verify serves the browser verifier without credentials, even
// where signing needs them, built with the node's root and constraint
// and pointed at the node's own publications file; the browser test
// (internal/webverify/browsertest) checks that the page works.
func TestVerifyPage(t *testing.T) {
	s := start(t, Config{Role: RoleAll, DataDir: t.TempDir(), PublishEvery: time.Hour, UsersFile: writeUsers(t, "alice:secret-a\n")})
	body := getPublic(t, s, "/verify", "text/html; charset=utf-8")
	page := html.UnescapeString(string(body))
	root := strings.ReplaceAll(strings.TrimSpace(string(s.n.Keys().RootPEM())), "\n", `\n`)
	for _, want := range []string{`id="verify"`, `"pubfileURL":"publications.bin"`, s.n.Keys().Constraint(), root, "connect-src 'self'"} {
		if !strings.Contains(page, want) {
			t.Errorf("the page lacks %.60q", want)
		}
	}

	r, err := http.Post("http://"+s.addr+"/verify", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	r.Body.Close()
	if r.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /verify: %s, want 405", r.Status)
	}
}
