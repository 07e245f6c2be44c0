// Package webverify is the verifier in the browser
// (docs/design/webverify.md): [Check] decides one signature for the page
// with the verifier package of the CLI. Package webverify/wasm exposes
// it to JavaScript (GOOS=js GOARCH=wasm); package webverify/page renders
// the page around that build.
package webverify
