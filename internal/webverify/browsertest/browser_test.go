// Package browsertest checks the verify page in a real browser: Debian's
// chromium, driven by playwright-core (testdata/drive.mjs), against a
// real `tempel serve` and the file `tempel verify-page` writes, opened
// from disk with the network off. Screenshots of every state go to
// $TEMPEL_TEST_OUT, else the test's temporary directory (the path is
// logged).
//
// Without chromium, node or npm the test is skipped with a message,
// except in CI (CI=true), where .ci/run installs them and their absence
// fails it.
package browsertest

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/tempel-ksi/tempel/internal/testpack"
	"github.com/tempel-ksi/tempel/internal/webverify"
	"github.com/tempel-ksi/tempel/internal/webverify/page"
)

// Bounds of the steps, on a loaded 2-core machine.
const (
	buildTimeout   = 3 * time.Minute
	readyWait      = 30 * time.Second
	npmTimeout     = 3 * time.Minute
	driveTimeout   = 2 * time.Minute
	commandTimeout = 30 * time.Second
)

// Publication strings of the reference pack (its MANIFEST.md): the
// publication tlv/ok-sig-2014-04-30.1-extended.ksig is extended to, and
// the calendar output of tlv/ok-sig-2014-04-30.1.ksig, which is not
// extended and so cannot be verified against it offline (GEN-02).
const (
	extendedPubStr = "AAAAAA-CTOQBY-AAMJYH-XZPM6T-UO6U6V-2WJMHQ-EJMVXR-JEAGID-2OY7P5-XFFKYI-QIF2LG-YOV7SO"
	plainPubStr    = "AAAAAA-CTMGHI-AAOELJ-GXHAK4-X3GVJE-YZOUJ2-NQWJAW-FQWFVZ-TJSIAU-3IU4MG-2UUORM-OOVBCT"
)

// largeSize is the size of the large document: more than the 256 MiB a
// page could hold in memory before it hashed documents in pieces.
const largeSize = 300 << 20

// hashedIn finds the page's own hashing time in #result.
var hashedIn = regexp.MustCompile(`document read and hashed in (\d+) ms`)

// writeLarge writes a document of size bytes: some text, then zeros (a
// sparse file, cheap to write).
func writeLarge(t *testing.T, path string, size int64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString("A recording of the board's meeting.\n"); err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
}

// verifyRuns is how often each in-page timing repeats (the median is
// kept).
const verifyRuns = 51

func TestBrowserVerify(t *testing.T) {
	if testing.Short() {
		t.Skip("starts tempel serve and chromium: skipped in -short")
	}
	chromium := need(t, "chromium", "Debian package chromium")
	need(t, "node", "Debian package nodejs")
	need(t, "npm", "Debian package npm")
	pack := testpack.Root(t)
	outDir := outputDir(t)
	modules := nodeModules(t)

	work := t.TempDir()
	bin := filepath.Join(work, "tempel")
	runCmd(t, buildTimeout, ".", "go", "build", "-o", bin, "../../../cmd/tempel")
	data := filepath.Join(work, "data")
	addr := startServer(t, bin, data)

	// A document signed by the node, as a KSI signature and as an RFC
	// 3161 token.
	doc := filepath.Join(work, "decision.txt")
	if err := os.WriteFile(doc, []byte("The decision of the board, 6 December.\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	runCmd(t, commandTimeout, work, bin, "sign", "--server", addr, doc)
	runCmd(t, commandTimeout, work, bin, "sign", "--server", addr, "--rfc3161", doc)
	pageFile := filepath.Join(work, "verify.html")
	runCmd(t, commandTimeout, work, bin, "verify-page", "-o", pageFile, "--data-dir", data)

	// A document larger than a page may hold in memory at once (the
	// former limit was 256 MiB): the page must hash it in pieces.
	large := filepath.Join(work, "recording.bin")
	writeLarge(t, large, largeSize)
	runCmd(t, commandTimeout, work, bin, "sign", "--server", addr, large)

	laptop := filepath.Join(pack, "documents", "LAPTOP.txt")
	extended := filepath.Join(pack, "tlv", "ok-sig-2014-04-30.1-extended.ksig")
	plain := filepath.Join(pack, "tlv", "ok-sig-2014-04-30.1.ksig")
	nodeCases := []testCase{
		{Name: "node-good", Document: doc, Signature: doc + ".ksig", want: webverify.Verified},
		{Name: "node-changed-document", Document: doc, Signature: doc + ".ksig", DocMutate: "append", want: webverify.Failed},
		{Name: "node-changed-signature", Document: doc, Signature: doc + ".ksig", SigMutate: "flip", want: webverify.Failed},
		{Name: "node-rfc3161-token", Document: doc, Signature: doc + ".tsr", want: webverify.Verified},
		{Name: "node-large-document", Document: large, Signature: large + ".ksig", ByPath: true, want: webverify.Verified},
		{Name: "node-pubstr-not-extended", Document: laptop, Signature: plain, PubStr: plainPubStr, want: webverify.Inconclusive},
	}
	// Dropped together after the last node case, which left other files
	// picked: only a working drop verifies.
	drop := testCase{Name: "node-dropped", Document: doc, Signature: doc + ".ksig", want: webverify.Verified}
	// Then the keyboard alone picks other files and types the
	// publication string.
	keyboard := testCase{Name: "node-keyboard", Document: laptop, Signature: extended, PubStr: extendedPubStr, want: webverify.Verified}
	fileCases := []testCase{
		{Name: "offline-good", Document: laptop, Signature: extended, PubStr: extendedPubStr, want: webverify.Verified},
		{Name: "offline-changed-document", Document: laptop, Signature: extended, PubStr: extendedPubStr, DocMutate: "append", want: webverify.Failed},
		{Name: "offline-changed-signature", Document: laptop, Signature: extended, PubStr: extendedPubStr, SigMutate: "flip", want: webverify.Failed},
		{Name: "offline-no-trust", Document: doc, Signature: doc + ".ksig", want: webverify.Inconclusive},
	}
	pubfile := filepath.Join(work, "publications.bin")
	fetch(t, "http://"+addr+"/publications.bin", pubfile)
	measures := []measure{
		{Name: "ok-sig-2014-04-30.1.ksig, user publication (not extended: GEN-02)", Document: laptop, Signature: plain, PubStr: plainPubStr, want: webverify.Inconclusive},
		{Name: "ok-sig-2014-04-30.1-extended.ksig, user publication", Document: laptop, Signature: extended, PubStr: extendedPubStr, want: webverify.Verified},
		{Name: "node signature, node publications file (PKCS#7 + key-based)", Document: doc, Signature: doc + ".ksig", Pubfile: pubfile,
			Root: filepath.Join(data, "keys", "root.pem"), Constraints: []string{"E=publications@tempel.test"}, want: webverify.Verified},
	}
	cfg := map[string]any{
		"chromium": chromium, "outDir": outDir, "nodeURL": "http://" + addr + "/verify", "fileURL": "file://" + pageFile,
		"nodeCases": nodeCases, "fileCases": fileCases, "drop": drop, "keyboard": keyboard, "measures": measures, "runs": verifyRuns, "loads": 3,
	}
	res := drive(t, modules, work, cfg)

	want := map[string]string{}
	for _, c := range append(append(nodeCases, drop, keyboard), fileCases...) {
		want[c.Name] = c.want
	}
	if len(res.Cases) != len(want) {
		t.Fatalf("%d cases ran, want %d", len(res.Cases), len(want))
	}
	for _, c := range res.Cases {
		if !strings.HasPrefix(c.Text, want[c.Name]) {
			t.Errorf("%s: #result %q, want it to begin with %s", c.Name, c.Text, want[c.Name])
		}
		if _, err := os.Stat(c.Screenshot); err != nil {
			t.Errorf("%s: no screenshot: %v", c.Name, err)
		}
	}
	for _, name := range []string{"node-good", "node-rfc3161-token", "node-dropped"} {
		text := caseText(res, name)
		for _, s := range []string{"Signed at", "UTC", "Signed by", "anonymous", "Checked against", "this service's publications file"} {
			if !strings.Contains(text, s) {
				t.Errorf("%s: #result %q lacks %q", name, text, s)
			}
		}
	}
	// A signature that did not verify vouches for nothing: its time and
	// signer are shown only as claims.
	for _, name := range []string{"node-changed-document", "offline-changed-document", "node-pubstr-not-extended"} {
		text := caseText(res, name)
		if strings.Contains(text, "Signed at") || strings.Contains(text, "Signed by") || !strings.Contains(text, "Claimed signer (not verified)") {
			t.Errorf("%s: #result %q shows the signing time or signer as if verified", name, text)
		}
	}
	if text := caseText(res, "offline-good"); !strings.Contains(text, "2014-04-30 13:57:36 UTC") || !strings.Contains(text, "GT :: testA") ||
		!strings.Contains(text, "the publication string you gave") {
		t.Errorf("offline-good: #result %q lacks the signing time, identity or anchor", text)
	}
	// The browser of the offline cases is in Europe/Tallinn (UTC+3 in
	// summer): the signing time must be shown in it too.
	if text := caseText(res, "offline-good"); !strings.Contains(text, "16:57:36") {
		t.Errorf("offline-good: #result %q lacks the signing time in the browser's time zone (16:57:36 in Tallinn)", text)
	}
	if m := hashedIn.FindStringSubmatch(caseText(res, "node-large-document")); m != nil {
		t.Logf("webverify large document: %d MiB read and hashed in the browser in %s ms", largeSize>>20, m[1])
	}
	if got, want := strings.Join(res.KeyboardOrder, " "), "document signature pubstr pubfile verify"; got != want {
		t.Errorf("Tab from the top of the page reaches %q, want %q", got, want)
	}
	if len(res.OfflineRequests) != 0 {
		t.Errorf("the offline page made network requests: %v", res.OfflineRequests)
	}
	t.Logf("screenshots: %s", outDir)

	report(t, res, measures, pageFile)
	for i, m := range res.Timing.Verify {
		if m.Status != measures[i].want {
			t.Errorf("measure %q: %s, want %s", m.Name, m.Status, measures[i].want)
		}
	}
}

type driveResult struct {
	Cases []struct {
		Name       string `json:"name"`
		Text       string `json:"text"`
		Screenshot string `json:"screenshot"`
	} `json:"cases"`
	Timing struct {
		NodeLoadMs []float64 `json:"nodeLoadMs"`
		FileLoadMs []float64 `json:"fileLoadMs"`
		Verify     []struct {
			Name   string  `json:"name"`
			Status string  `json:"status"`
			Median float64 `json:"median"`
			Min    float64 `json:"min"`
			Max    float64 `json:"max"`
		} `json:"verify"`
	} `json:"timing"`
	OfflineRequests []string `json:"offlineRequests"`
	KeyboardOrder   []string `json:"keyboardOrder"`
}

func caseText(r *driveResult, name string) string {
	for _, c := range r.Cases {
		if c.Name == name {
			return c.Text
		}
	}
	return ""
}

// testCase is one state of the page: files picked, a publication string
// typed (or not), the verdict #result must begin with. DocMutate
// "append" adds a byte to the document, SigMutate "flip" changes one bit
// in the middle of the signature.
type testCase struct {
	Name      string `json:"name"`
	ByPath    bool   `json:"byPath,omitempty"` // picked by path, not copied through the driver
	Document  string `json:"document"`
	Signature string `json:"signature"`
	PubStr    string `json:"pubstr,omitempty"`
	DocMutate string `json:"docMutate,omitempty"`
	SigMutate string `json:"sigMutate,omitempty"`
	want      string
}

// measure is one verification timed inside the page around the
// WebAssembly call, and natively by the same Check for comparison.
type measure struct {
	Name        string   `json:"name"`
	Document    string   `json:"document"`
	Signature   string   `json:"signature"`
	PubStr      string   `json:"pubstr,omitempty"`
	Pubfile     string   `json:"pubfile,omitempty"`
	Root        string   `json:"root,omitempty"`
	Constraints []string `json:"constraints,omitempty"`
	want        string
}

// report logs the figures of issue 15: the page's size, the in-browser
// verification time with the native figure of the same check beside it
// (the code tempel verify runs), and the load times.
func report(t *testing.T, res *driveResult, measures []measure, pagePath string) {
	t.Helper()
	raw, gz, err := page.WasmSize()
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(pagePath)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("webverify size: page %d bytes, wasm %d bytes raw, %d gzipped", fi.Size(), raw, gz)
	t.Logf("webverify load from loopback (navigation start to verifier ready, ms): node /verify %s; file:// %s",
		ms(res.Timing.NodeLoadMs), ms(res.Timing.FileLoadMs))
	for i, m := range res.Timing.Verify {
		native := nativeMedian(t, measures[i])
		t.Logf("webverify verify %s: browser median %.2f ms (min %.2f, max %.2f, %d runs); native Go median %.3f ms",
			m.Name, m.Median, m.Min, m.Max, verifyRuns, native)
		if m.Median > verifyTarget {
			t.Logf("NOTE: %s took %.2f ms in the browser, over the %d ms target", m.Name, m.Median, verifyTarget)
		}
	}
	for _, l := range append(res.Timing.NodeLoadMs, res.Timing.FileLoadMs...) {
		if l > loadTarget {
			t.Logf("NOTE: a load took %.0f ms, over the %d ms target (timings are noisy on a shared machine)", l, loadTarget)
		}
	}
}

// loadTarget is issue 15's page load target, ms; verifyTarget the
// in-browser verification target. They are reported, not asserted: a
// loaded CI machine must not fail on them.
const (
	loadTarget   = 1000
	verifyTarget = 5
)

func ms(v []float64) string {
	parts := make([]string, len(v))
	for i, x := range v {
		parts[i] = fmt.Sprintf("%.0f", x)
	}
	return "[" + strings.Join(parts, " ") + "]"
}

// nativeMedian runs the same Check natively, verifyRuns times.
func nativeMedian(t *testing.T, m measure) float64 {
	t.Helper()
	read := func(p string) []byte {
		if p == "" {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	in := webverify.Input{Document: read(m.Document), Signature: read(m.Signature), PubStr: m.PubStr, Pubfile: read(m.Pubfile),
		Root: read(m.Root), Constraints: m.Constraints, Now: time.Now()}
	d := make([]float64, verifyRuns)
	for i := range d {
		start := time.Now()
		if r := webverify.Check(context.Background(), in); r.Status != m.want {
			t.Fatalf("native %s: %s (%s), want %s", m.Name, r.Status, r.Reason, m.want)
		}
		d[i] = float64(time.Since(start).Microseconds()) / 1000
	}
	sort.Float64s(d)
	return d[len(d)/2]
}

func drive(t *testing.T, modules, work string, cfg map[string]any) *driveResult {
	t.Helper()
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(work, "drive")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	script, err := os.ReadFile(filepath.Join("testdata", "drive.mjs"))
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"drive.mjs": script, "config.json": b} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Symlink(modules, filepath.Join(dir, "node_modules")); err != nil {
		t.Fatal(err)
	}
	out := runCmd(t, driveTimeout, dir, "node", "drive.mjs", "config.json")
	var r driveResult
	if err := json.Unmarshal(out, &r); err != nil {
		t.Fatalf("drive.mjs output: %v\n%s", err, out)
	}
	return &r
}

// need returns the path of tool, or skips (fails in CI) naming what
// provides it.
func need(t *testing.T, tool, from string) string {
	t.Helper()
	p, err := exec.LookPath(tool)
	if err != nil {
		missing(t, fmt.Sprintf("%s is not installed (%s)", tool, from))
	}
	return p
}

// missing skips outside CI and fails in CI, where .ci/run installs
// everything this test needs.
func missing(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s: .ci/run must install it", why)
	}
	t.Skipf("%s: skipping the browser test", why)
}

// outputDir is where the screenshots go: $TEMPEL_TEST_OUT/browser when
// set, else a temporary directory of the test.
func outputDir(t *testing.T) string {
	t.Helper()
	base := os.Getenv("TEMPEL_TEST_OUT")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, "webverify-browser")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// runCmd runs a command within limit and returns its standard output;
// it fails the test with the output when the command fails.
func runCmd(t *testing.T, limit time.Duration, dir, name string, args ...string) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	cmd := command(ctx, dir, name, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s\n%s", name, strings.Join(args, " "), err, out, stderr.String())
	}
	return out
}

// command is the process of runCmd, killed when ctx ends. Killing the
// driver (node) is enough: playwright talks to chromium over a pipe,
// and chromium exits when the pipe closes (TestDriverKilledClosesBrowser).
func command(ctx context.Context, dir, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Dir = dir
	return cmd
}

// startServer starts `tempel serve` on a free loopback port and waits
// (bounded) until it is ready; it is stopped when the test ends.
func startServer(t *testing.T, bin, data string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	logPath := filepath.Join(filepath.Dir(data), "serve.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "serve", "--data-dir", data, "--listen", addr)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("tempel serve log:\n%s", b)
		}
	})
	client := &http.Client{Timeout: 2 * time.Second}
	deadline := time.Now().Add(readyWait)
	for {
		resp, err := client.Get("http://" + addr + "/readyz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return addr
			}
		}
		select {
		case <-done:
			t.Fatal("tempel serve exited before it was ready")
		case <-time.After(50 * time.Millisecond): // the next poll, bounded by deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("tempel serve not ready within %v", readyWait)
		}
	}
}

// fetch saves url to path.
func fetch(t *testing.T, url, path string) {
	t.Helper()
	client := &http.Client{Timeout: 10 * time.Second}
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.ReadFrom(resp.Body); err != nil {
		t.Fatal(err)
	}
}

// nodeModules returns a node_modules directory holding testdata/npm's
// pinned packages, installed with `npm ci` once per lock file into a
// cache (TEMPEL_NPM_CACHE, or the user's cache directory), so that later
// runs need no network.
func nodeModules(t *testing.T) string {
	t.Helper()
	pkg, err := os.ReadFile(filepath.Join("testdata", "npm", "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	lock, err := os.ReadFile(filepath.Join("testdata", "npm", "package-lock.json"))
	if err != nil {
		t.Fatal(err)
	}
	base := os.Getenv("TEMPEL_NPM_CACHE")
	if base == "" {
		c, err := os.UserCacheDir()
		if err != nil {
			t.Fatal(err)
		}
		base = filepath.Join(c, "tempel", "webverify-npm")
	}
	sum := sha256.Sum256(append(append([]byte{}, pkg...), lock...))
	dir := filepath.Join(base, hex.EncodeToString(sum[:8]))
	modules := filepath.Join(dir, "node_modules")
	if _, err := os.Stat(filepath.Join(dir, "installed")); err == nil {
		return modules
	}
	if err := os.MkdirAll(base, 0o755); err != nil {
		t.Fatal(err)
	}
	// Installed beside the cache entry and renamed into place, so that a
	// concurrent run never sees half an install.
	tmp, err := os.MkdirTemp(base, "install-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	for name, b := range map[string][]byte{"package.json": pkg, "package-lock.json": lock} {
		if err := os.WriteFile(filepath.Join(tmp, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), npmTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--prefix", tmp)
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		missing(t, fmt.Sprintf("npm ci of testdata/npm failed: %v\n%s", err, out))
	}
	if err := os.WriteFile(filepath.Join(tmp, "installed"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil && !errors.Is(err, fs.ErrExist) {
		if _, serr := os.Stat(filepath.Join(dir, "installed")); serr != nil {
			t.Fatal(err)
		}
	}
	return modules
}
