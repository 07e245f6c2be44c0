#!/usr/bin/env bash
# bench-recover.sh TEMPEL RATE
#
# What one client sees while others overload the node, and how soon after
# the overload it is served normally again: start a fresh `TEMPEL serve`
# (SERVE_ARGS adds flags, e.g. SERVE_ARGS='--max-memory 384MiB'), run
# `TEMPEL bench --mode unary --rate RATE` (3 s warm-up, 10 s measured)
# against it, and meanwhile sign one hash every 200 ms with `TEMPEL sign` on
# a connection of its own, for 24 s. Prints, per probe: seconds since the
# bench started, seconds the signature took, exit code (0 signed, 3
# refused or failed), and the bench's JSON at the end.
set -u
bin=$1; rate=$2
dir=$(mktemp -d /tmp/tempel-recover.XXXX)
port=18091
"$bin" serve --data-dir "$dir/data" --listen 127.0.0.1:$port ${SERVE_ARGS:-} >"$dir/serve.out" 2>"$dir/serve.err" &
spid=$!
for _ in $(seq 1 300); do
  curl -fs http://127.0.0.1:$port/readyz >/dev/null 2>&1 && break
  sleep 0.1
done
now() { date +%s.%N; }
t0=$(now)
"$bin" bench --server 127.0.0.1:$port --mode unary --rate "$rate" --json >"$dir/bench.json" 2>&1 &
bpid=$!
i=0
while (( $(echo "$(now) < $t0 + 24" | bc) )); do
  s=$(now)
  "$bin" sign --server 127.0.0.1:$port --hash "SHA-256:$(printf '%064x' $((RANDOM * 100000 + i)))" \
    -o "$dir/probe.ksig" --force >/dev/null 2>&1
  rc=$?
  e=$(now)
  printf '%6.2f %6.3f %d\n' "$(echo "$s - $t0" | bc)" "$(echo "$e - $s" | bc)" "$rc"
  i=$((i + 1))
  sleep 0.2
done
wait $bpid
cat "$dir/bench.json"; echo
kill -INT $spid; wait $spid 2>/dev/null
rm -rf "$dir"
