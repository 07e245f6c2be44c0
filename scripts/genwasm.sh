#!/usr/bin/env bash
# genwasm.sh regenerates the browser verifier's committed artefacts in
# internal/webverify/page/assets/ (make wasm, or go generate ./internal/webverify/page):
#   verify.wasm.gz  internal/webverify/wasm built for GOOS=js GOARCH=wasm,
#                   gzipped (the page embeds it; go build cannot run a
#                   second build, so the artefact is committed)
#   wasm_exec.js    the loader of the same Go release, from
#                   $(go env GOROOT)/lib/wasm
#   GOVERSION       the Go release that built them
# The build is reproducible (-trimpath, no VCS stamp), so
# TestAssetsUpToDate rebuilds with the same release and compares.
set -euo pipefail
cd "$(dirname "$0")/.."
GO=${GO:-go}
out=internal/webverify/page/assets
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
GOOS=js GOARCH=wasm "$GO" build -trimpath -buildvcs=false -ldflags='-s -w' -o "$tmp/verify.wasm" ./internal/webverify/wasm
gzip -9 -n -c "$tmp/verify.wasm" > "$out/verify.wasm.gz"
cp "$("$GO" env GOROOT)/lib/wasm/wasm_exec.js" "$out/wasm_exec.js"
"$GO" env GOVERSION > "$out/GOVERSION"
echo "wrote $out/verify.wasm.gz ($(wc -c < "$tmp/verify.wasm") bytes raw, $(wc -c < "$out/verify.wasm.gz") gzipped) for $(cat "$out/GOVERSION")"
