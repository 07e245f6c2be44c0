#!/usr/bin/env bash
# bench-files.sh TEMPEL [N]
#
# The CLI figure of the README's Performance section: N small files
# (default 10,000) in a tree of 100 directories, `TEMPEL sign -r` of the
# tree and `TEMPEL verify -r` of it with the default policy (publications
# file verified against the server's trust root, as a configured citizen
# runs it), against a freshly started `TEMPEL serve` (a new data
# directory, port 18091). Prints one line: the wall time and files/s of
# each, measured around the whole command (start-up, walking, hashing,
# the request, writing, verifying). Run it three times and give the
# spread:
#
#   for i in 1 2 3; do scripts/bench-files.sh ./tempel; done
set -eu
bin=$(realpath "$1"); n=${2:-10000}
dir=$(mktemp -d /tmp/tempel-files.XXXX)
trap 'kill -INT $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
port=18091
"$bin" serve --data-dir "$dir/data" --listen 127.0.0.1:$port --publish-every 1s >"$dir/serve.out" 2>"$dir/serve.err" &
pid=$!

# The files: "file I" in docs/DD/I.txt.
for d in $(seq -w 0 99); do mkdir -p "$dir/docs/$d"; done
for ((i = 0; i < n; i++)); do
  printf 'file %d\n' "$i" >"$dir/docs/$(printf %02d $((i % 100)))/$i.txt"
done

for _ in $(seq 1 300); do
  curl -fs "http://127.0.0.1:$port/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
"$bin" pubfile --server 127.0.0.1:$port --trust-root "$dir/data/keys/root.pem" --cnstr E=publications@tempel.test -o "$dir/pub.bin" >/dev/null

now() { date +%s.%N; }
cd "$dir"
t0=$(now)
"$bin" sign --server 127.0.0.1:$port -r docs >"$dir/sign.out"
t1=$(now)
"$bin" verify -r docs --pubfile pub.bin --trust-root data/keys/root.pem --cnstr E=publications@tempel.test >"$dir/verify.out"
t2=$(now)
signed=$(find docs -name '*.ksig' | wc -l)
awk -v n="$n" -v s="$signed" -v t0="$t0" -v t1="$t1" -v t2="$t2" 'BEGIN {
  printf "files=%d signatures=%d sign_s=%.2f sign_files_per_s=%.0f verify_s=%.2f verify_files_per_s=%.0f\n",
    n, s, t1 - t0, n / (t1 - t0), t2 - t1, n / (t2 - t1) }'
echo "  sign:   $(cat "$dir/sign.out")"
echo "  verify: $(cat "$dir/verify.out")"
