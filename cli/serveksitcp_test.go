package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A non-loopback --ksi-tcp-listen needs TLS or --insecure-listen, as
// --listen does, and is refused before anything is created; accepted,
// the banner says where ksi+tcp clients connect.
func TestServeKSITCPListen(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"tempel", "serve", "--ksi-tcp-listen", "0.0.0.0:0", "--data-dir", dir}, &out, &errb)
	if code != ExitError || !strings.Contains(errb.String(), "--ksi-tcp-listen") || !strings.Contains(errb.String(), "--insecure-listen") {
		t.Fatalf("exit %d, stderr %q: want a refusal naming --ksi-tcp-listen and --insecure-listen", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "keys")); err == nil {
		t.Error("keys created before the refusal")
	}
	if testing.Short() {
		t.Skip("the accepted case creates a development PKI")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	out.Reset()
	errb.Reset()
	if code := Run(ctx, []string{"tempel", "serve", "--ksi-tcp-listen", "127.0.0.1:0", "--data-dir", dir}, &out, &errb); code != 0 {
		t.Fatalf("loopback: exit %d, stderr %q", code, errb.String())
	}
	if !strings.Contains(out.String(), "ksi+tcp://127.0.0.1:") {
		t.Errorf("the banner does not show the ksi+tcp address:\n%s", out.String())
	}
}
