package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeSettingsPrecedence checks where serve takes a setting from: the
// flag over TEMPEL_* over the --config file. An unusable listen address
// makes serve stop at once, naming the address it was given.
func TestServeSettingsPrecedence(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "tempel.conf")
	if err := os.WriteFile(cfg, []byte("# settings\nlisten = from-file:1\npublish-every = 5s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		env  string
		args []string
		want string
	}{
		{"file", "", nil, "from-file:1"},
		{"env over file", "from-env:2", nil, "from-env:2"},
		{"flag over env", "from-env:2", []string{"--listen", "from-flag:3"}, "from-flag:3"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("TEMPEL_LISTEN", tc.env)
			}
			var out, errb bytes.Buffer
			args := append([]string{"tempel", "serve", "--config", cfg, "--data-dir", dir}, tc.args...)
			code := Run(context.Background(), args, &out, &errb)
			if code != ExitError || !strings.Contains(errb.String(), "listen on "+tc.want) {
				t.Fatalf("exit %d, stderr %q: want the listen address %s", code, errb.String(), tc.want)
			}
		})
	}
	// A line that names no serve flag is a usage error naming the line.
	bad := filepath.Join(dir, "bad.conf")
	os.WriteFile(bad, []byte("listen = x\nno-such-flag = 1\n"), 0o600)
	var out, errb bytes.Buffer
	if code := Run(context.Background(), []string{"tempel", "serve", "--config", bad}, &out, &errb); code != ExitError || !strings.Contains(errb.String(), "line 2") {
		t.Fatalf("bad config: exit %d, %q", code, errb.String())
	}
	// A file holding the upstream key is refused while others may read it.
	secret := filepath.Join(dir, "secret.conf")
	os.WriteFile(secret, []byte("listen = from-secret:1\nupstream-key = k-9f3\n"), 0o600)
	os.Chmod(secret, 0o644)
	errb.Reset()
	if code := Run(context.Background(), []string{"tempel", "serve", "--config", secret, "--data-dir", dir}, &out, &errb); code != ExitError ||
		!strings.Contains(errb.String(), "readable by others") || strings.Contains(errb.String(), "k-9f3") {
		t.Fatalf("upstream key in a config readable by others: exit %d, %q", code, errb.String())
	}
	// A period under a second is refused before anything starts.
	errb.Reset()
	if code := Run(context.Background(), []string{"tempel", "serve", "--publish-every", "500ms", "--data-dir", dir}, &out, &errb); code != ExitError || !strings.Contains(errb.String(), "publish-every") {
		t.Fatalf("short period: exit %d, %q", code, errb.String())
	}
	errb.Reset()
	if code := Run(context.Background(), []string{"tempel", "serve", "--max-memory", "lots", "--data-dir", dir}, &out, &errb); code != ExitError || !strings.Contains(errb.String(), "max-memory") {
		t.Fatalf("bad --max-memory: exit %d, %q", code, errb.String())
	}
}

// TestServeRefusesPlaintextOffLoopback: a non-loopback --listen needs TLS
// or an explicit --insecure-listen; the message names the flags.
func TestServeRefusesPlaintextOffLoopback(t *testing.T) {
	dir := t.TempDir()
	var out, errb bytes.Buffer
	code := Run(context.Background(), []string{"tempel", "serve", "--listen", "0.0.0.0:0", "--data-dir", dir}, &out, &errb)
	if code != ExitError || !strings.Contains(errb.String(), "not a loopback address") ||
		!strings.Contains(errb.String(), "--tls-cert") || !strings.Contains(errb.String(), "--insecure-listen") {
		t.Fatalf("exit %d, stderr %q: want a refusal naming --tls-cert and --insecure-listen", code, errb.String())
	}
	if _, err := os.Stat(filepath.Join(dir, "keys")); err == nil {
		t.Error("keys created before the refusal")
	}
	if testing.Short() {
		t.Skip("the accepted cases create a development PKI")
	}
	// Accepted with TLS or --insecure-listen: the server starts and, its
	// context being cancelled already, stops at once.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, extra := range [][]string{{"--insecure-listen"}, {"--tls"}} {
		out.Reset()
		errb.Reset()
		args := append([]string{"tempel", "serve", "--listen", "0.0.0.0:0", "--data-dir", dir}, extra...)
		if code := Run(ctx, args, &out, &errb); code != 0 {
			t.Fatalf("%v: exit %d, stderr %q", extra, code, errb.String())
		}
		if extra[0] == "--tls" && !strings.Contains(out.String(), "https://") {
			t.Errorf("--tls banner does not show https:// URLs:\n%s", out.String())
		}
	}
}
