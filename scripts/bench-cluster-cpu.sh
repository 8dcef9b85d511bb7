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
#   pubsub-spread-heavy  as pubsub-spread at 10,000 msg/s (100,000 deliveries/s): where
#                  records share link frames and wake-ups, which a light load hardly does
#   pubsub-cross-max  1 publisher -> 10 subscribers at the highest rate the setup sustains
#                  (64 messages in flight per publisher), on 3 nodes the publisher on the first
#                  node and the subscribers on the other two (wrs-bench pubsub --cross): the
#                  cross-node max rate, and its CPU per delivery
#   api            create -> get -> delete at 1,500 req/s (50 clients), on 3 nodes each call
#                  of a loop on another node
#   idle           no load for as long as one measurement takes: what the nodes spend on
#                  their own (Raft ticks, link pings, failure detection); the table's "net"
#                  column is CPU per op with that idle rate times the measurement's wall time
#                  taken off
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
idle="$work/idle.tsv"
: > "$idle"
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

# measure LABEL SCENARIO-ARGS...: one wrs-bench call; appends "label scenario cpu_ticks
# wall_seconds" to $cpu.
measure() {
  local label=$1 scenario=$2; shift 2
  local before after t0 t1
  t0=$(date +%s.%N)
  before=$(ticks "${pids[@]}")
  timeout 120 "$bin/wrs-bench" "$@" --label "$label" --duration "$duration" --warmup "$warmup" \
    --json "$results" --no-header "$scenario" "${args[@]}" >&2
  after=$(ticks "${pids[@]}")
  t1=$(date +%s.%N)
  printf '%s\t%s\t%s\t%s\n' "$label" "$scenario" "$((after - before))" "$(awk "BEGIN { print $t1 - $t0 }")" >> "$cpu"
}

# idle LABEL: the nodes' CPU over a quiet stretch as long as a measurement (warm-up, duration
# and 2 s for connects and drain); appends to $idle.
idle() {
  local before after secs=$((warmup + duration + 2))
  before=$(ticks "${pids[@]}")
  sleep "$secs"
  after=$(ticks "${pids[@]}")
  printf '%s\t%s\t%s\n' "$1" "$((after - before))" "$secs" >> "$idle"
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$runs"); do
  for n in 1 3; do
    say "run $run/$runs: $n node(s)"
    start "$n" 0 "$run"
    args=(--publishers 1 --subscribers 10 --rate 2000)
    measure "pubsub-spread-$n" pubsub "${urls[@]}"
    measure "pubsub-one-$n" pubsub "${urls[@]:0:2}"
    args=(--publishers 1 --subscribers 10 --rate 10000)
    measure "pubsub-spread-heavy-$n" pubsub "${urls[@]}"
    args=(--publishers 1 --subscribers 10 --cross)
    measure "pubsub-cross-max-$n" pubsub "${urls[@]}"
    args=(--publishers 1 --subscribers 10 --rate 2000)
    if [ "$n" = 1 ]; then
      args+=(--affine)
      measure "pubsub-affine-$n" pubsub "${urls[@]}"
    fi
    args=(--clients 50 --rate 1500)
    measure "api-$n" api "${urls[@]}"
    idle "idle-$n"
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

python3 - "$results" "$cpu" "$tck" "$warmup" "$duration" "$idle" <<'PY' | tee "$work/cluster-cpu.md"
import json, statistics, sys
results = [json.loads(l) for l in open(sys.argv[1])]
cpu = [l.rstrip("\n").split("\t") for l in open(sys.argv[2])]
tck, secs = float(sys.argv[3]), float(sys.argv[4]) + float(sys.argv[5])
# Idle CPU-s per wall second, by node count (median over runs).
idle_rows = {}
for l in open(sys.argv[6]):
    label, ticks, wall = l.split()
    idle_rows.setdefault(int(label.split("-")[1]), []).append(int(ticks) / tck / float(wall))
idle = {n: statistics.median(v) for n, v in idle_rows.items()}
per = {}
for r, (label, scenario, ticks, wall) in zip(results, cpu):
    assert r["label"] == label, (r["label"], label)
    n = int(label.rsplit("-", 1)[1])
    ops = r["rate"] * secs
    c = int(ticks) / tck
    net = c - idle.get(n, 0.0) * float(wall)
    per.setdefault(label, []).append((r["rate"], c, c / ops * 1e6, r["errors"], net / ops * 1e6))
print("| load | nodes | ops/s achieved | CPU-s of all wrs processes | CPU-µs per op | 3 nodes ÷ 1 node | net of idle: CPU-µs per op | net 3 ÷ 1 | errors | runs |")
print("|---|---|---|---|---|---|---|---|---|---|")
for base in ["pubsub-spread", "pubsub-spread-heavy", "pubsub-cross-max", "pubsub-one", "pubsub-affine", "api"]:
    first = per.get(f"{base}-1", [(0, 0, 0, 0, 0)])
    one = statistics.median(x[2] for x in first)
    one_net = statistics.median(x[4] for x in first)
    for n in (1, 3):
        rows = per.get(f"{base}-{n}", [])
        if not rows:
            continue
        med = lambda i: statistics.median(x[i] for x in rows)
        ratio = med(2) / one if one else float("nan")
        ratio_net = med(4) / one_net if one_net else float("nan")
        print(f"| {base} | {n} | {med(0):,.0f} | {med(1):.2f} | {med(2):.1f} | {ratio:.2f}× | {med(4):.1f} | {ratio_net:.2f}× | {sum(x[3] for x in rows)} | {len(rows)} |")
print()
print("Idle: " + ", ".join(f"{n} node(s) {v * 100:.1f} % of a core" for n, v in sorted(idle.items())) + " (all nodes together).")
PY
{
  echo
  echo "Medians of $runs runs of ${duration} s after ${warmup} s warm-up each; commit $(git rev-parse --short HEAD),"
  echo "$(nproc) cores, load average $load_start at start and $load_end at the end."
  echo "Command: scripts/bench-cluster-cpu.sh --runs $runs --duration $duration (results: $work)."
} | tee -a "$work/cluster-cpu.md"
