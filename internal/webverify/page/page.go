package page

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	_ "embed"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"strings"

	"github.com/tempel-ksi/tempel/internal/buildinfo"
	"github.com/tempel-ksi/tempel/internal/webverify"
	"github.com/tempel-ksi/tempel/verifier"
)

// The generated artefacts (make wasm; TestAssetsUpToDate checks them)
// and the page's own sources.
var (
	//go:embed assets/verify.wasm.gz
	wasmGz []byte
	//go:embed assets/wasm_exec.js
	wasmExecJS string
	//go:embed assets/page.html
	pageHTML string
	//go:embed assets/page.css
	pageCSS string
	//go:embed assets/page.js
	pageJS string
)

// PageOptions say what a page trusts and where it may look.
type PageOptions struct {
	// Root is the PEM root certificate publications files must chain
	// to; nil builds a page that trusts only publication strings.
	Root []byte
	// Constraints on the publications file's signer (E=ADDRESS); needed
	// with Root.
	Constraints []string
	// PubfileURL is fetched (relative to the page) when the person gives
	// no other trust: "publications.bin" on a node, "" in a file opened
	// from disk, which then makes no network request at all.
	PubfileURL string
}

// Page renders the verify page: one HTML file holding the WebAssembly
// verifier, its loader and the trust it was built with. Its Content
// Security Policy allows only its own inline code, and network access
// only to its own origin for the publications file (none at all without
// PubfileURL), so the document cannot be sent anywhere.
func Page(opts PageOptions) ([]byte, error) {
	if len(opts.Root) > 0 {
		certs, err := verifier.ParseCertificates(opts.Root)
		if err != nil || len(certs) == 0 {
			return nil, fmt.Errorf("webverify: the root certificate cannot be read: %v", err)
		}
		if len(opts.Constraints) == 0 {
			return nil, errors.New("webverify: a root needs a constraint on the publications file's signer (E=ADDRESS)")
		}
	}
	for _, c := range opts.Constraints {
		if _, err := verifier.ParseConstraint(c); err != nil {
			return nil, fmt.Errorf("webverify: constraint %q: %w", c, err)
		}
	}
	cfg, err := json.Marshal(map[string]any{
		"root":         string(opts.Root),
		"constraints":  opts.Constraints,
		"pubfileURL":   opts.PubfileURL,
		"maxDocument":  webverify.MaxDocumentSize,
		"maxSignature": webverify.MaxSignatureSize,
		"maxPubfile":   webverify.MaxPubfileSize,
	})
	if err != nil {
		return nil, fmt.Errorf("webverify: %w", err)
	}
	// Inline code can never close its script element early: json.Marshal
	// escapes < and >, base64 has neither, and the scripts are ours.
	for _, s := range []string{wasmExecJS, pageJS, pageCSS} {
		if strings.Contains(strings.ToLower(s), "</script") || strings.Contains(strings.ToLower(s), "</style") {
			return nil, errors.New("webverify: an embedded script closes its element")
		}
	}
	connect := "'none'"
	if opts.PubfileURL != "" {
		connect = "'self'"
	}
	csp := fmt.Sprintf("default-src 'none'; script-src %s %s 'wasm-unsafe-eval'; style-src %s; connect-src %s; img-src data:; base-uri 'none'; form-action 'none'",
		cspHash(wasmExecJS), cspHash(pageJS), cspHash(pageCSS), connect)
	trust := "Without a publication string, the signature is checked against the publications file you choose."
	switch {
	case opts.PubfileURL != "" && len(opts.Root) > 0:
		trust = "Without a publication string or a chosen file, the signature is checked against this service's publications file, whose own signature must chain to the root certificate this page was built with."
	case len(opts.Root) == 0:
		trust = "This page was built without a root certificate: only a publication string can vouch for a signature."
	}
	r := strings.NewReplacer(
		"{{CSP}}", html.EscapeString(csp),
		"{{CSS}}", pageCSS,
		"{{TRUST}}", html.EscapeString(trust),
		"{{VERSION}}", html.EscapeString(buildinfo.Version),
		"{{CONFIG}}", string(cfg),
		"{{WASM}}", base64.StdEncoding.EncodeToString(wasmGz),
		"{{WASMEXEC}}", wasmExecJS,
		"{{JS}}", pageJS,
	)
	var b bytes.Buffer
	b.Grow(len(wasmGz)*4/3 + len(wasmExecJS) + len(pageJS) + 16<<10)
	if _, err := r.WriteString(&b, pageHTML); err != nil {
		return nil, fmt.Errorf("webverify: %w", err)
	}
	return b.Bytes(), nil
}

// cspHash is the CSP source expression allowing exactly this inline
// script or style.
func cspHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return "'sha256-" + base64.StdEncoding.EncodeToString(sum[:]) + "'"
}

// WasmSize returns the verifier's WebAssembly size, raw and gzipped as
// embedded in the page.
func WasmSize() (raw, gzipped int, err error) {
	zr, err := gzip.NewReader(bytes.NewReader(wasmGz))
	if err != nil {
		return 0, 0, fmt.Errorf("webverify: embedded wasm: %w", err)
	}
	n, err := io.Copy(io.Discard, zr)
	if err != nil {
		return 0, 0, fmt.Errorf("webverify: embedded wasm: %w", err)
	}
	return int(n), len(wasmGz), nil
}
