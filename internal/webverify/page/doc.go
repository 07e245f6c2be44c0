// Package page renders the verify page (docs/design/webverify.md): one
// self-contained HTML file holding the WebAssembly build of
// webverify/wasm (committed gzipped in assets/ by `make wasm`), Go's
// wasm_exec.js of the same release, and the trust the page was built
// with. It is kept apart from webverify so that the WebAssembly build
// does not embed itself.
package page
