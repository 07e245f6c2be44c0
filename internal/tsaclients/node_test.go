package tsaclients

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// npmDir is testdata/npm: the pinned versions of the JavaScript clients
// (package.json) and of everything they pull in (package-lock.json).
const npmDir = "testdata/npm"

// npmInstallTimeout bounds `npm ci`: a few MB from the npm registry.
const npmInstallTimeout = 3 * time.Minute

var (
	npmOnce    sync.Once
	npmModules string
	npmErr     error
)

// nodeModules returns a node_modules directory holding the packages of
// testdata/npm, installed once per lock file into a cache directory
// (TEMPEL_NPM_CACHE, or the user's cache directory) with `npm ci`, so
// that later runs need no network. It skips (fails in CI) when node or
// npm is missing or the install fails.
func nodeModules(t *testing.T) string {
	t.Helper()
	need(t, "node", "Node.js 20.19 or later")
	need(t, "npm", "npm, with Node.js")
	npmOnce.Do(func() { npmModules, npmErr = installNPM() })
	if npmErr != nil {
		missing(t, fmt.Sprintf("the npm packages of %s could not be installed (%v)", npmDir, npmErr))
	}
	return npmModules
}

func installNPM() (string, error) {
	pkg, err := os.ReadFile(filepath.Join(npmDir, "package.json"))
	if err != nil {
		return "", err
	}
	lock, err := os.ReadFile(filepath.Join(npmDir, "package-lock.json"))
	if err != nil {
		return "", err
	}
	base := os.Getenv("TEMPEL_NPM_CACHE")
	if base == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			return "", err
		}
		base = filepath.Join(c, "tempel", "tsaclients-npm")
	}
	sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
	dir := filepath.Join(base, hex.EncodeToString(sum[:8]))
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(dir, "installed")); err == nil {
		return modules, nil
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	// Installed beside the cache entry and renamed into place, so that a
	// concurrent run never sees half an install.
	tmp, err := os.MkdirTemp(base, "install-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			return "", err
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmInstallTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", tmp)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("npm ci: %w\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "installed"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, fs.ErrExist) {
		if _, serr := os.Stat(filepath.Join(dir, "installed")); serr != nil {
			return "", err
		}
	}
	return modules, nil
}

// runNode runs testdata/SCRIPT (an ES module) with node, beside a link to
// the installed node_modules so that its imports resolve there.
func runNode(t *testing.T, script string, args ...string) []byte {
	t.Helper()
	modules := nodeModules(t)
	dir := t.TempDir()
	src, err := os.ReadFile(filepath.Join("testdata", script))
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, script), src)
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	return run(t, dir, "node", append([]string{script}, args...)...)
}
