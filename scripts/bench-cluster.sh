#!/usr/bin/env bash
# bench-cluster.sh TEMPEL LABEL BENCH-ARGS...
#
# The README's replicated-calendar figure: start a fresh 3-member cluster
# of `TEMPEL serve` on loopback (ports 18091-18093, new data directories),
# wait for a leader, run `TEMPEL bench` once through the leader
# (TARGET=follower: through a follower, which forwards its rounds), stop
# the members, and print LABEL, the leader's peak RSS, its commit latency
# per second (p50/p99 from tempel_calendar_commit_seconds) and the bench's
# JSON on one line. Compare with scripts/bench-fresh.sh in the same run.
set -u
bin=$1; label=$2; shift 2
dir=$(mktemp -d /tmp/tempel-cluster.XXXX)
spec=1=127.0.0.1:18091,2=127.0.0.1:18092,3=127.0.0.1:18093
pids=()
for i in 1 2 3; do
  "$bin" serve --data-dir "$dir/n$i" --listen 127.0.0.1:1809$i --node-id $i --cluster $spec >"$dir/n$i.log" 2>&1 &
  pids+=($!)
done
leader=""
for _ in $(seq 1 300); do
  for i in 1 2 3; do
    if curl -fs 127.0.0.1:1809$i/v1/cluster 2>/dev/null | grep -q '"is_leader":true,"has_quorum":true' &&
       curl -fs 127.0.0.1:1809$i/readyz >/dev/null 2>&1; then leader=$i; break 2; fi
  done
  sleep 0.1
done
[ -n "$leader" ] || { echo "$label: no leader"; kill -9 "${pids[@]}"; exit 1; }
target=$leader
if [ "${TARGET:-leader}" = follower ]; then target=$(( leader % 3 + 1 )); fi
out=$("$bin" bench --server 127.0.0.1:1809$target --json "$@" 2>&1)
metrics=$(curl -fs 127.0.0.1:1809$leader/metrics)
hwm=$(awk '/VmHWM/ {print $2}' /proc/${pids[$((leader-1))]}/status)
kill -INT "${pids[@]}"; wait "${pids[@]}" 2>/dev/null
# p50 and p99 of the commit latency histogram (bucket upper bounds).
quantiles=$(echo "$metrics" | awk -F'[{}" ]+' '
  /^tempel_calendar_commit_seconds_bucket/ { le[n] = $3; c[n] = $NF; n++ }
  END {
    total = c[n-1]; p50 = ""; p99 = ""
    for (i = 0; i < n; i++) {
      if (p50 == "" && c[i] >= total * 0.5) p50 = le[i]
      if (p99 == "" && c[i] >= total * 0.99) p99 = le[i]
    }
    printf "commit_p50_le=%ss commit_p99_le=%ss commits=%d", p50, p99, total
  }')
echo "$label target=${TARGET:-leader} rss_peak_mb=$((hwm / 1024)) $quantiles $(echo "$out" | tr -d '\n')"
rm -rf "$dir"
