#!/usr/bin/env bash
# bench-fresh.sh TEMPEL LABEL BENCH-ARGS...
#
# One end-to-end figure as the README's Performance section takes it: start
# a fresh `TEMPEL serve` with its defaults (a new data directory, port
# 18090; SERVE_ARGS adds server flags, e.g. SERVE_ARGS=--tls), wait for
# /readyz, run `TEMPEL bench` once against it, stop the server, and print
# LABEL, the server's peak RSS (VmHWM) and the bench's JSON on one line.
# Run it for two builds in turn to compare them side by side:
#
#   for i in 1 2 3; do scripts/bench-fresh.sh ./new new --mode unary --rate 40000
#                      scripts/bench-fresh.sh ./old old --mode unary --rate 40000; done
set -u
bin=$1; label=$2; shift 2
dir=$(mktemp -d /tmp/tempel-bench.XXXX)
port=18090
"$bin" serve --data-dir "$dir/data" --listen 127.0.0.1:$port ${SERVE_ARGS:-} >"$dir/serve.out" 2>"$dir/serve.err" &
pid=$!
scheme=http; ca=()
case "${SERVE_ARGS:-}" in *--tls*) scheme=https; ca=(--cacert "$dir/data/keys/root.pem");; esac
for _ in $(seq 1 300); do
  curl -fs "${ca[@]}" "$scheme://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
server=127.0.0.1:$port; extra=()
if [ $scheme = https ]; then server=https://127.0.0.1:$port; extra=(--tls-ca "$dir/data/keys/root.pem"); fi
out=$("$bin" bench --server "$server" "${extra[@]}" --json "$@" 2>&1)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -INT $pid; wait $pid 2>/dev/null
echo "$label rss_peak_mb=$((hwm / 1024)) $(echo "$out" | tr -d '\n')"
rm -rf "$dir"
