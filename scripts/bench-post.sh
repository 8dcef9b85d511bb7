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
warmup=1
publishers=4
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    -h|--help) sed -n '2,11p' "$0"; exit 0 ;;
    *) echo "bench-post.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "bench-post.sh: $*" >&2; }
stamp=$(date -u +%Y%m%dT%H%M%SZ)
work="target/bench/post-$stamp"
mkdir -p "$work"
work=$(cd "$work" && pwd)
results="$work/results.jsonl"
: > "$results"
cargo build --release -p wrs -p wrs-bench
bin=target/release

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 2)); done
  echo "$p"
}

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  pids=()
}
trap cleanup EXIT

# start NODES RUN: NODES wrs processes (one cluster when 3), in memory; sets `urls` and waits
# until every node answers and (for 3) all agree on a leader, all voters.
start() {
  local n=$1 run=$2 join="" ports=()
  for i in $(seq 0 $((n - 1))); do ports+=("$(pick_port $((18300 + 20 * i + 2 * run)))"); done
  if [ "$n" -gt 1 ]; then
    join=$(printf '127.0.0.1:%s,' "${ports[@]}"); join=${join%,}
  fi
  urls=()
  for i in $(seq 0 $((n - 1))); do
    local p=${ports[$i]}
    WRS_BIND=127.0.0.1 WRS_API_PORT=$p WRS_NODE_PORT=$((p + 1000)) WRS_DOMAIN=127.0.0.1 \
      WRS_JOIN=$join WRS_CLUSTER_SECRET=bench \
      "$bin/wrs" > "$work/wrs-n$n-r$run-$i.log" 2>&1 &
    pids+=("$!")
    urls+=(--url "http://127.0.0.1:$p")
  done
  for _ in $(seq 1 100); do
    local ready=1
    for p in "${ports[@]}"; do
      body=$( (exec 3<>"/dev/tcp/127.0.0.1/$p" && printf 'GET /cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 && timeout 2 cat <&3) 2>/dev/null || true)
      case "$body" in *'"leader":'[0-9]*) ;; *) ready= ;; esac
      [ "$(echo "$body" | grep -o '"role"' | wc -l)" = "$n" ] || ready=
      # every member a voter: a learner still being promoted moves channels' owners
      case "$body" in *'"learner"'*) ready= ;; esac
    done
    [ -z "$ready" ] || return 0
    sleep 0.2
  done
  say "the $n-node setup did not come up; see $work"; exit 1
}

measure() {
  local label=$1 subs=$2
  timeout 120 "$bin/wrs-bench" "${urls[@]}" --label "$label" --duration "$duration" \
    --warmup "$warmup" --json "$results" --no-header post --publishers "$publishers" \
    --subscribers "$subs" >&2
}

load_start=$(cut -d' ' -f1-3 /proc/loadavg)
for run in $(seq 1 "$runs"); do
  for n in 1 3; do
    start "$n" "$run"
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
