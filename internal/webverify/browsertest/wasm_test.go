package browsertest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tempel-ksi/tempel/internal/testpack"
)

// wasmScript loads the committed WebAssembly verifier in node, as the
// page does, and calls its functions as config.json says: each step is
// [function, argument] with byte arrays given as arrays of numbers
// (keys "signature", "document", "piece"). It prints each answer.
const wasmScript = `import { readFileSync } from "node:fs";
await import("./wasm_exec.js");
const cfg = JSON.parse(readFileSync("config.json", "utf8"));
const ready = new Promise((res) => { globalThis.tempelReady = res; });
const go = new Go();
const { instance } = await WebAssembly.instantiate(readFileSync("verify.wasm"), go.importObject);
go.run(instance);
await ready;
const bytes = (a) => (Array.isArray(a) ? new Uint8Array(a) : a);
const out = [];
for (const [fn, arg] of cfg.steps) {
  try {
    let r;
    if (fn === "tempelVerify") {
      const o = Object.assign({}, arg);
      for (const k of ["signature", "document"]) if (k in o) o[k] = bytes(o[k]);
      r = globalThis.tempelVerify(o);
    } else if (fn === "tempelHashWrite" && typeof arg === "number") {
      r = globalThis.tempelHashWrite(new Uint8Array(arg));
    } else {
      r = globalThis[fn](bytes(arg));
    }
    out.push(String(r));
  } catch (e) {
    out.push("threw: " + e.message);
  }
}
console.log(JSON.stringify(out));
process.exit(0);
`

// TestWasmAPI calls the committed WebAssembly verifier's functions in
// node, without a browser: the document hashed in pieces verifies, a
// changed one fails, a piece over the bound refuses the document, and a
// call that makes Go panic is answered INCONCLUSIVE and leaves the
// verifier working (an unrecovered panic ends the Go program, and every
// later check on the page with it).
func TestWasmAPI(t *testing.T) {
	if testing.Short() {
		t.Skip("runs node: skipped in -short")
	}
	need(t, "node", "Debian package nodejs")
	laptop := testpack.Read(t, "documents", "LAPTOP.txt")
	ext := testpack.Read(t, "tlv", "ok-sig-2014-04-30.1-extended.ksig")
	dir := t.TempDir()
	gz, err := os.ReadFile(filepath.Join("..", "page", "assets", "verify.wasm.gz"))
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(gz))
	if err != nil {
		t.Fatal(err)
	}
	wasm, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	exec, err := os.ReadFile(filepath.Join("..", "page", "assets", "wasm_exec.js"))
	if err != nil {
		t.Fatal(err)
	}
	nums := func(b []byte) []int {
		n := make([]int, len(b))
		for i, c := range b {
			n[i] = int(c)
		}
		return n
	}
	hashed := map[string]any{"documentHashed": true, "signature": nums(ext), "pubstr": extendedPubStr}
	steps := []struct {
		fn   string
		arg  any
		want string // the answer begins with it
	}{
		{"tempelVerify", map[string]any{"signature": map[string]int{"length": 3}}, `{"status":"INCONCLUSIVE","reason":"internal error`},
		{"tempelHashStart", nums(ext), ""},
		{"tempelHashWrite", nums(laptop[:2]), "2"},
		{"tempelHashWrite", nums(laptop[2:]), "6"},
		{"tempelVerify", hashed, `{"status":"VERIFIED"`},
		{"tempelVerify", hashed, `{"status":"INCONCLUSIVE","reason":"no document chosen`}, // the hash is used once
		{"tempelHashStart", nums(ext), ""},
		{"tempelHashWrite", nums(append(append([]byte{}, laptop...), '!')), "7"},
		{"tempelVerify", hashed, `{"status":"FAILED","code":"GEN-01"`},
		{"tempelHashStart", nums(ext), ""},
		{"tempelHashWrite", 16<<20 + 1, "-1"},
		{"tempelVerify", hashed, `{"status":"INCONCLUSIVE","reason":"no document chosen`},
		{"tempelHashStart", nums([]byte("hello")), `{"status":"FAILED"`},
		{"tempelHashWrite", nums(laptop), "-1"},
	}
	var cfg struct {
		Steps [][2]any `json:"steps"`
	}
	for _, s := range steps {
		cfg.Steps = append(cfg.Steps, [2]any{s.fn, s.arg})
	}
	b, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for name, body := range map[string][]byte{"verify.wasm": wasm, "wasm_exec.js": exec, "run.mjs": []byte(wasmScript), "config.json": b} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out := runCmd(t, commandTimeout, dir, "node", "run.mjs")
	var got []string
	if err := json.Unmarshal(out, &got); err != nil || len(got) != len(steps) {
		t.Fatalf("node printed %q (%v), want %d answers", out, err, len(steps))
	}
	for i, s := range steps {
		if !strings.HasPrefix(got[i], s.want) || (s.want == "" && got[i] != "") {
			t.Errorf("step %d, %s: got %.200q, want it to begin with %q", i, s.fn, got[i], s.want)
		}
	}
}
