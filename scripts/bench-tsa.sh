#!/usr/bin/env bash
# bench-tsa.sh TEMPEL KEY BENCH-ARGS...
#
# One run of the RFC 3161 comparison as the README's Performance section
# takes it: make a fresh data directory whose TSA key is KEY (rsa or
# ecdsa; `TEMPEL keys init --tsa-key KEY`), start `TEMPEL serve` on it
# (port 18091; SERVE_ARGS adds server flags, default --max-conns 15000:
# every front-door token holds an HTTP/1.1 connection for its round and
# second), wait for /readyz, run `TEMPEL bench --mode rfc3161` once (the
# baseline with the same kind of key, the front door, native unary and
# streaming, one after the other), stop the server, and print KEY, the
# server's peak RSS (VmHWM), the 1-minute load average before and after
# (the machine is shared) and the bench's JSON on one line:
#
#   for i in 1 2 3; do scripts/bench-tsa.sh bin/tempel ecdsa --rate 15000
#                      scripts/bench-tsa.sh bin/tempel rsa --rate 1500 --tsa-conns 2000; done
#
# Both rates are above what this 2-core machine answers, so the ratios
# compare capacities (an RSA front door needs a few hundred connections;
# 2,000 keep an overload from turning into thousands of dials at once).
set -u
bin=$1; key=$2; shift 2
dir=$(mktemp -d /tmp/tempel-bench-tsa.XXXX)
port=18091
"$bin" keys init --data-dir "$dir/data" --tsa-key "$key" >"$dir/keys.out" || { cat "$dir/keys.out"; rm -rf "$dir"; exit 1; }
"$bin" serve --data-dir "$dir/data" --listen 127.0.0.1:$port ${SERVE_ARGS:---max-conns 15000} >"$dir/serve.out" 2>"$dir/serve.err" &
pid=$!
for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
load=$(cut -d' ' -f1 /proc/loadavg)
out=$("$bin" bench --server 127.0.0.1:$port --mode rfc3161 --json "$@" 2>&1)
hwm=$(awk '/VmHWM/ {print $2}' /proc/$pid/status)
kill -INT $pid; wait $pid 2>/dev/null
echo "$key rss_peak_mb=$((hwm / 1024)) load_before=$load load_after=$(cut -d' ' -f1 /proc/loadavg) $(echo "$out" | tr -d '\n')"
rm -rf "$dir"
