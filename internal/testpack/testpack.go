// Package testpack locates the reference KSI test data (../shared/testdata/ksi)
// for tests. The data is read in place and never copied into the repository.
//
// Outside CI a missing pack skips the test with a clear message; in CI
// (environment variable CI set) it fails the test.
package testpack

import (
	"os"
	"path/filepath"
	"testing"
)

// Environment variables that point at other copies of the data.
const (
	// EnvTestData names the folder holding the whole KSI test data
	// (the layout of ../shared/testdata/ksi).
	EnvTestData = "TEMPEL_KSI_TESTDATA"
	// EnvTestPack names the conformance pack folder (the layout of
	// ../shared/testdata/ksi/test_pack).
	EnvTestPack = "TEMPEL_TESTPACK_DIR"
)

// Root returns the KSI test data folder, or skips (fails in CI) the test.
func Root(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(EnvTestData); d != "" {
		return mustExist(t, d, EnvTestData)
	}
	d, ok := findShared()
	if !ok {
		missing(t, "../shared/testdata/ksi not found above "+cwd())
	}
	return d
}

// Lookup returns the KSI test data folder without skipping when it is
// absent: fuzz targets seed from it when they can and still run from their
// committed corpus when they cannot.
func Lookup() (string, bool) {
	if d := os.Getenv(EnvTestData); d != "" {
		return d, true
	}
	return findShared()
}

// Path joins elements to the test data root.
func Path(t testing.TB, elem ...string) string {
	t.Helper()
	return filepath.Join(append([]string{Root(t)}, elem...)...)
}

// Read returns the content of a file under the test data root.
func Read(t testing.TB, elem ...string) []byte {
	t.Helper()
	b, err := os.ReadFile(Path(t, elem...))
	if err != nil {
		t.Fatalf("testpack: %v", err)
	}
	return b
}

// PackDir returns the conformance pack folder (test_pack).
func PackDir(t testing.TB) string {
	t.Helper()
	if d := os.Getenv(EnvTestPack); d != "" {
		return mustExist(t, d, EnvTestPack)
	}
	return mustExist(t, filepath.Join(Root(t), "test_pack"), "test data root")
}

func mustExist(t testing.TB, d, from string) string {
	t.Helper()
	if st, err := os.Stat(d); err != nil || !st.IsDir() {
		missing(t, d+" (from "+from+") is not a folder")
	}
	return d
}

func missing(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("KSI test data missing in CI: %s", why)
	}
	t.Skipf("KSI test data missing, skipping: %s (set %s or %s)", why, EnvTestData, EnvTestPack)
}

func cwd() string {
	d, _ := os.Getwd()
	return d
}

// findShared walks up from the working directory looking for
// shared/testdata/ksi beside a parent folder (the repository's ../shared).
func findShared() (string, bool) {
	d := cwd()
	for {
		c := filepath.Join(d, "..", "shared", "testdata", "ksi")
		if st, err := os.Stat(c); err == nil && st.IsDir() {
			abs, _ := filepath.Abs(c)
			return abs, true
		}
		p := filepath.Dir(d)
		if p == d {
			return "", false
		}
		d = p
	}
}
