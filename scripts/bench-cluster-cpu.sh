#!/usr/bin/env bash
# What a cluster costs in CPU: the same fixed offered load against one node and against a
# 3-node cluster on this machine, and the CPU-seconds all wrs processes spent on it (utime +
# stime from /proc/<pid>/stat, the generator excluded). On one box three nodes share its cores,
# so throughput says little about scaling; CPU per operation does.
#
#   pubsub-spread  1 publisher at 2,000 msg/s -> 10 subscribers (20,000 deliveries/s), on 3
#                  nodes the publisher and subscribers spread over all of them
#   pubsub-one     the same, every client on the first node (the channel's owner or not: the
#                  owner is its rendezvous hash, so 1 in 3 of the runs have it local)
#   pubsub-affine  the same, every client on the node the create response's url names
#                  (wrs-bench pubsub --affine); on 3 nodes a cluster of its own started with
#                  WRS_CONNECT_TO_OWNER=true, so that is the channel's owner and nothing
#                  crosses nodes (on 1 node it is that node, as pubsub-one)
#   api            create -> get -> delete at 1,500 req/s (50 clients), on 3 nodes each call
#                  of a loop on another node
#
#   scripts/bench-cluster-cpu.sh              3 runs of each, 5 s measured
#   scripts/bench-cluster-cpu.sh --runs 1 --duration 2
#
# CPU is read before and after each wrs-bench call (connects, warm-up and drain included, the
# same for every setup); operations are the achieved rate × (warm-up + duration).
set -euo pipefail
cd "$(dirname "$0")/.."

runs=3
duration=5
name=cluster-cpu
help_lines=2,22p
. scripts/bench-nodes.sh
cpu="$work/cpu.tsv"
: > "$cpu"
tck=$(getconf CLK_TCK)


ticks() {   # utime + stime of the given pids, in clock ticks
  local t=0 p f
  for p in "$@"; do
    f=$(sed 's/.*) //' "/proc/$p/stat")
    set -- $f
    t=$(( t + ${12} + ${13} ))
  done
  echo "$t"
}

# measure LABEL SCENARIO-ARGS...: one wrs-bench call; appends "label scenario cpu_ticks" to $cpu.
measure() {
  local label=$1 scenario=$2; shift 2
  local before after
  before=$(ticks "${pids[@]}")
  timeout 120 "$bin/wrs-bench" "$@" --label "$label" --duration "$duration" --warmup "$warmup" \
    --json "$results" --no-header "$scenario" "${args[@]}" >&2
  after=$(ticks "${pids[@]}")
  printf '%s\t%s\t%s\n' "$label" "$scenario" "$((after - before))" >> "$cpu"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$runs"); do
  for n in 1 3; do
    say "run $run/$runs: $n node(s)"
    start "$n" 0 "$run"
    args=(--publishers 1 --subscribers 10 --rate 2000)
    measure "pubsub-spread-$n" pubsub "${urls[@]}"
    measure "pubsub-one-$n" pubsub "${urls[@]:0:2}"
    if [ "$n" = 1 ]; then
      args+=(--affine)
      measure "pubsub-affine-$n" pubsub "${urls[@]}"
    fi
    args=(--clients 50 --rate 1500)
    measure "api-$n" api "${urls[@]}"
    cleanup
    if [ "$n" -gt 1 ]; then
      say "run $run/$runs: $n node(s), WRS_CONNECT_TO_OWNER=true"
      start "$n" 0 "$run" WRS_CONNECT_TO_OWNER=true
      args=(--publishers 1 --subscribers 10 --rate 2000 --affine)
      measure "pubsub-affine-$n" pubsub "${urls[@]}"
      cleanup
    fi
  done
done
load_end=$(cut -d' ' -f1-3 /proc/loadavg)

python3 - "$results" "$cpu" "$tck" "$warmup" "$duration" <<'PY' | tee "$work/cluster-cpu.md"
import json, statistics, sys
results = [json.loads(l) for l in open(sys.argv[1])]
cpu = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
tck, secs = float(sys.argv[3]), float(sys.argv[4]) + float(sys.argv[5])
per = {}
for r, (label, scenario, ticks) in zip(results, cpu):
    assert r["label"] == label, (r["label"], label)
    ops = r["rate"] * secs
    per.setdefault(label, []).append((r["rate"], int(ticks) / tck, int(ticks) / tck / ops * 1e6, r["errors"]))
print("| load | nodes | ops/s achieved | CPU-s of all wrs processes | CPU-µs per op | 3 nodes ÷ 1 node | errors | runs |")
print("|---|---|---|---|---|---|---|---|")
for base in ["pubsub-spread", "pubsub-one", "pubsub-affine", "api"]:
    one = statistics.median(x[2] for x in per.get(f"{base}-1", [(0, 0, 0, 0)]))
    for n in (1, 3):
        rows = per.get(f"{base}-{n}", [])
        if not rows:
            continue
        med = lambda i: statistics.median(x[i] for x in rows)
        ratio = med(2) / one if one else float("nan")
        print(f"| {base} | {n} | {med(0):,.0f} | {med(1):.2f} | {med(2):.1f} | {ratio:.2f}× | {sum(x[3] for x in rows)} | {len(rows)} |")
PY
{
  echo
  echo "Medians of $runs runs of ${duration} s after ${warmup} s warm-up each; commit $(git rev-parse --short HEAD),"
  echo "$(nproc) cores, load average $load_start at start and $load_end at the end."
  echo "Command: scripts/bench-cluster-cpu.sh --runs $runs --duration $duration (results: $work)."
} | tee -a "$work/cluster-cpu.md"
