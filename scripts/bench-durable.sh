#!/usr/bin/env bash
# What WRS_DATA_DIR costs: the API scenario (50 keep-alive clients looping create → get →
# delete) against wrs in memory and wrs on a data directory, alternating in one run, on one node
# and on a 3-node cluster (the three calls of a loop go to three different nodes).
#
#   scripts/bench-durable.sh              3 runs of each, 4 s measured; prints a markdown table
#   scripts/bench-durable.sh --runs 1 --duration 2
#
# Every durable run starts on an empty directory under target/bench/ (on this machine's disk,
# whose fsync latency is the cost being measured). Results: target/bench/durable-<stamp>/.
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
duration=4
name=durable
help_lines=2,10p
. scripts/bench-nodes.sh

measure() {
  local label=$1
  timeout 120 "$bin/wrs-bench" "${urls[@]}" --label "$label" --duration "$duration" \
    --warmup "$warmup" --json "$results" --no-header api --clients 50 >&2
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$runs"); do
  for n in 1 3; do
    # alternate which goes first, so a burst of outside load does not always hit the same one
    if [ $((run % 2)) = 1 ]; then order="0 1"; else order="1 0"; fi
    for durable in $order; do
      say "run $run/$runs: $n node(s), durable=$durable"
      start "$n" "$durable" "$run"
      label="memory-$n"; [ "$durable" = 0 ] || label="durable-$n"
      measure "$label"
      cleanup
    done
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

med() { "$bin/wrs-bench" median --results "$results" --scenario api --key 50 --server "$1" --field "$2"; }
{
  echo "| nodes | in memory, req/s | WRS_DATA_DIR, req/s | durable ÷ memory | p99 ms memory / durable |"
  echo "|---|---|---|---|---|"
  for n in 1 3; do
    m=$(med "memory-$n" rate); d=$(med "durable-$n" rate)
    mp=$(med "memory-$n" p99); dp=$(med "durable-$n" p99)
    awk -v n="$n" -v m="$m" -v d="$d" -v mp="$mp" -v dp="$dp" \
      'BEGIN { printf "| %d | %.0f | %.0f | %.2f× | %.1f / %.1f |\n", n, m, d, d / m, mp, dp }'
  done
  echo
  echo "Medians of $runs runs of ${duration} s after ${warmup} s warm-up each, alternating; commit"
  echo "$(git rev-parse --short HEAD), $(nproc) cores, load average $load_start at start and $load_end at the end."
  echo "Command: scripts/bench-durable.sh --runs $runs --duration $duration (results: $work)."
} | tee "$work/durable.md"
