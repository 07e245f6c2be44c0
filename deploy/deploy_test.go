// Package deploy holds the files that install tempel as a service: the
// systemd unit, the container image, the Grafana dashboard and the
// Prometheus alert rules. These tests check them as far as this machine
// can: systemd-analyze verifies the unit, promtool checks and unit-tests
// the rules; the Dockerfile is only read (building it needs a Docker
// daemon and its registry).
package deploy

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// directives returns the key=value lines of a systemd unit or the
// instructions of a Dockerfile, comments and blank lines dropped, with
// continuation lines joined.
func directives(t *testing.T, name string) []string {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	cont := false
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		if !cont && (l == "" || strings.HasPrefix(l, "#")) {
			continue
		}
		joined := strings.TrimSuffix(l, "\\")
		if cont {
			out[len(out)-1] += " " + strings.TrimSpace(joined)
		} else {
			out = append(out, strings.TrimSpace(joined))
		}
		cont = strings.HasSuffix(l, "\\")
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// The unit runs tempel unprivileged, with a read-only system and only its
// state directory writable, and never in development mode.
func TestSystemdUnitHardening(t *testing.T) {
	lines := directives(t, "tempel.service")
	for _, want := range []string{
		"User=tempel", "NoNewPrivileges=yes", "ProtectSystem=strict", "ProtectHome=yes", "PrivateTmp=yes",
		"ReadWritePaths=/var/lib/tempel", "StateDirectory=tempel", "CapabilityBoundingSet=",
		"Environment=TEMPEL_DATA_DIR=/var/lib/tempel", "Environment=TEMPEL_USERS=/etc/tempel/users",
		"ConditionPathExists=/etc/tempel/users", "ExecStart=/usr/local/bin/tempel serve",
	} {
		if !slices.Contains(lines, want) {
			t.Errorf("tempel.service lacks %s", want)
		}
	}
}

// analyze runs systemd-analyze verify on unit (named tempel.service in a
// directory of its own) and returns what it said about it.
func analyze(t *testing.T, unit string) (complaints string, err error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "tempel.service")
	if err := os.WriteFile(p, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "systemd-analyze", "verify", p).CombinedOutput()
	var mine []string
	for _, l := range strings.Split(string(out), "\n") {
		if strings.Contains(l, "tempel.service") {
			mine = append(mine, l)
		}
	}
	return strings.Join(mine, "\n"), err
}

// systemd-analyze accepts every line of the unit. A line it does not
// understand is only a warning to it (the unit would run without that
// protection), so any remark about the unit fails the test.
func TestSystemdUnitVerifies(t *testing.T) {
	if testing.Short() {
		t.Skip("runs systemd-analyze")
	}
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("no systemd-analyze here")
	}
	b, err := os.ReadFile("tempel.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that the binary exists: point it at one that does.
	bin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) to stand in for the binary")
	}
	unit := strings.Replace(string(b), "ExecStart=/usr/local/bin/tempel", "ExecStart="+bin, 1)
	if said, err := analyze(t, unit); err != nil || said != "" {
		t.Errorf("systemd-analyze verify: %v\n%s", err, said)
	}
	// The check itself catches a protection systemd would ignore.
	bad := strings.Replace(unit, "ProtectSystem=strict", "ProtectSystem=sideways", 1)
	if said, _ := analyze(t, bad); !strings.Contains(said, "sideways") {
		t.Errorf("systemd-analyze did not flag ProtectSystem=sideways; it said:\n%s", said)
	}
}

// The image is built in two stages into a static binary, runs it as a
// user other than root, keeps the calendar in a volume, checks /healthz
// and refuses to start without a users file unless told otherwise. It is
// only read here: building it needs a Docker daemon.
func TestDockerfile(t *testing.T) {
	lines := directives(t, "Dockerfile")
	var from []string
	user := ""
	for _, l := range lines {
		switch word, rest, _ := strings.Cut(l, " "); strings.ToUpper(word) {
		case "FROM":
			from = append(from, rest)
		case "USER":
			user = rest
		}
	}
	if len(from) < 2 || !strings.Contains(from[0], " AS build") {
		t.Errorf("not a multi-stage build: FROM %v", from)
	}
	if u, _, _ := strings.Cut(user, ":"); u == "" || u == "root" || u == "0" {
		t.Errorf("the image runs as %q, want a user other than root", user)
	}
	all := strings.Join(lines, "\n")
	for _, want := range []string{
		"CGO_ENABLED=0 go build",
		"-X github.com/tempel-ksi/tempel/internal/buildinfo.Version=${VERSION}",
		"VOLUME /data", "TEMPEL_DATA_DIR=/data", "TEMPEL_USERS=/etc/tempel/users",
		"://127.0.0.1:8080/healthz", "TEMPEL_LISTEN=0.0.0.0:8080",
	} {
		if !strings.Contains(all, want) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	// Plaintext off loopback is the operator's choice, never the image's.
	if strings.Contains(all, "INSECURE_LISTEN") {
		t.Error("the image turns on --insecure-listen")
	}
	if !slices.ContainsFunc(lines, func(l string) bool { return strings.HasPrefix(l, "HEALTHCHECK ") }) {
		t.Error("Dockerfile has no HEALTHCHECK")
	}
	// The -X path must name the variable that exists.
	src, err := os.ReadFile("../internal/buildinfo/buildinfo.go")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(src), "\nvar Version = ") {
		t.Error("internal/buildinfo no longer has var Version, which the Dockerfile and the Makefile set")
	}
}

// The alert rules load in Prometheus' own checker, and their unit tests
// (alerts_test.yml: series in, alerts out, annotations rendered) pass.
func TestAlertRules(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool not installed (Debian prometheus; .ci/run installs it)")
		}
		t.Skip("no promtool here (Debian package prometheus)")
	}
	for _, args := range [][]string{
		{"check", "rules", "prometheus/alerts.yml"},
		{"test", "rules", "prometheus/alerts_test.yml"},
	} {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		out, err := exec.CommandContext(ctx, promtool, args...).CombinedOutput()
		cancel()
		if err != nil {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}
