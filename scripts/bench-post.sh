#!/usr/bin/env bash
# Publish over HTTP: wrs-bench's post scenario (4 keep-alive publishers looping
# POST /channels/{id}/messages with 64 B bodies, each waiting for its 202) into one pub-sub
# channel with 10 and with 100 WebSocket subscribers, on one node and on a 3-node cluster
# (publishers and subscribers spread over the nodes, so most publishes are forwarded to the
# channel's owner). Reports requests/s and deliveries/s (counted at the subscribers).
#
#   scripts/bench-post.sh              3 runs of each, 4 s measured; prints a markdown table
#   scripts/bench-post.sh --runs 1 --duration 2
#
# Results: target/bench/post-<stamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
duration=4
publishers=4
name=post
help_lines=2,11p
. scripts/bench-nodes.sh

measure() {
  local label=$1 subs=$2
  timeout 120 "$bin/wrs-bench" "${urls[@]}" --label "$label" --duration "$duration" \
    --warmup "$warmup" --json "$results" --no-header post --publishers "$publishers" \
    --subscribers "$subs" >&2
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$runs"); do
  for n in 1 3; do
    start "$n" 0 "$run"
    for subs in 10 100; do
      say "run $run/$runs: $n node(s), $subs subscribers"
      measure "nodes-$n" "$subs"
    done
    cleanup
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

# Medians per (nodes, subscribers) of requests/s, deliveries/s, delivery p99 and errors.
table() {
  python3 - "$results" <<'PY'
import json, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    r = json.loads(line)
    subs = int(r["key"].split("x")[1].split("@")[0])
    rows.setdefault((r["label"], subs), []).append(r)
print("| nodes | subscribers | requests/s | deliveries/s | delivery p99 ms | errors | runs |")
print("|---|---|---|---|---|---|---|")
for (label, subs), rs in sorted(rows.items()):
    med = lambda f: statistics.median(f(r) for r in rs)
    print(f"| {label.split('-')[1]} | {subs} | {med(lambda r: r['extra'].get('requests_per_s', 0)):,.0f} "
          f"| {med(lambda r: r['rate']):,.0f} | {med(lambda r: r['lat']['p99_ms']):.1f} "
          f"| {sum(r['errors'] for r in rs)} | {len(rs)} |")
PY
}
{
  table
  echo
  echo "Medians of $runs runs of ${duration} s after ${warmup} s warm-up each, $publishers publishers, 64 B;"
  echo "commit $(git rev-parse --short HEAD), $(nproc) cores, load average $load_start at start and $load_end at the end."
  echo "Command: scripts/bench-post.sh --runs $runs --duration $duration (results: $work)."
} | tee "$work/post.md"
