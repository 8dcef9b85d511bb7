#!/usr/bin/env bash
# Benchmark wrs against the raw baseline relay with the same load generator, on this machine.
#
#   scripts/bench.sh            full run (~10 min): 3 runs of each scenario, writes docs/benchmarks.md
#   scripts/bench.sh --quick    ~1-2 min: 1 run each, shorter windows, writes docs/benchmarks.md
#   scripts/bench.sh --smoke    a short run of every scenario (CI); fails if any scenario errors;
#                               writes its report under target/bench/ only
#   --against BIN               put another wrs binary (e.g. a build of an older commit) where the
#                               baseline relay runs, so every ratio is this build ÷ that one
#   --perf                      also profile the wrs process (perf record -e cpu-clock) during one
#                               extra pub-sub, api and echo run; the top symbols go into the report
#
# Options: --runs N, --duration S (measured seconds per run), --out FILE (report path),
#          --release / --debug (profile; default release, smoke: debug unless --release).
# Environment: BENCH_WRS_PORT (18180), BENCH_BASELINE_PORT (18181).
# Builds in the chosen profile, starts wrs and baseline-relay on 127.0.0.1, runs the scenarios
# alternating between the two servers, stops them, and writes the report with SVG plots.
set -euo pipefail
cd "$(dirname "$0")/.."

invocation="scripts/bench.sh${*:+ $*}"
mode=full
runs=3
duration=4
warmup=1
profile=release
profile_set=
out=docs/benchmarks.md
perf=
against=
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) mode=quick ;;
    --smoke) mode=smoke ;;
    --runs) runs="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    --out) out="$2"; shift ;;
    --release) profile=release; profile_set=1 ;;
    --perf) perf=1 ;;
    --against) against="$2"; shift ;;
    --debug) profile=debug; profile_set=1 ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
case "$mode" in
  quick) runs=1; duration=1.5; warmup=0.5 ;;
  smoke) runs=1; duration=1; warmup=0.3; [ -n "$profile_set" ] || profile=debug ;;
esac

stamp=$(date -u +%Y%m%dT%H%M%SZ)
work="target/bench/$mode-$stamp"
mkdir -p "$work"
results="$work/results.jsonl"
commands="$work/commands.txt"
: > "$results"; : > "$commands"
log="$work/bench.log"

say() { echo "bench.sh: $*" >&2; }

# ---- build
start_all=$(date +%s)
if [ "$profile" = release ]; then
  say "building (release)"
  cargo build --release -p wrs -p wrs-bench
  bin=target/release
else
  say "building (debug)"
  cargo build -p wrs -p wrs-bench
  bin=target/debug
fi
echo "cargo build $([ "$profile" = release ] && echo --release) -p wrs -p wrs-bench" >> "$commands"

# ---- file descriptors: 10,000 connections need as many on both ends
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
if [ "$(ulimit -n)" != unlimited ] && [ "$(ulimit -n)" -lt 10500 ]; then
  ulimit -n 10500 2>/dev/null || say "warning: open-file limit is $(ulimit -n); conns may fail"
fi

# ---- ports
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
pick_port() {
  local p=$1
  while ! port_free "$p"; do p=$((p + 2)); done
  echo "$p"
}
wport=$(pick_port "${BENCH_WRS_PORT:-18180}")
bport=$(pick_port "${BENCH_BASELINE_PORT:-18181}")
[ "$bport" != "$wport" ] || bport=$(pick_port $((wport + 1)))

pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

wait_port() {
  for _ in $(seq 1 100); do
    port_free "$1" || return 0
    sleep 0.1
  done
  say "server on port $1 did not start; see $work/*.log"; exit 1
}

start_servers() {
  WRS_BIND=127.0.0.1 WRS_API_PORT=$wport WRS_NODE_PORT=$((wport + 1000)) \
    "$bin/wrs" >> "$work/wrs.log" 2>&1 &
  wpid=$!; pids+=("$wpid")
  if [ -n "$against" ]; then
    WRS_BIND=127.0.0.1 WRS_API_PORT=$bport WRS_NODE_PORT=$((bport + 1000)) \
      "$against" >> "$work/baseline.log" 2>&1 &
  else
    BASELINE_BIND=127.0.0.1 BASELINE_PORT=$bport "$bin/baseline-relay" >> "$work/baseline.log" 2>&1 &
  fi
  bpid=$!; pids+=("$bpid")
  wait_port "$wport"; wait_port "$bport"
}
restart_servers() {
  kill "$wpid" "$bpid" 2>/dev/null || true
  wait "$wpid" "$bpid" 2>/dev/null || true
  for _ in $(seq 1 100); do port_free "$wport" && port_free "$bport" && break; sleep 0.1; done
  start_servers
  echo "# (restarted both servers)" >> "$commands"
}
start_servers
echo "WRS_BIND=127.0.0.1 WRS_API_PORT=$wport WRS_NODE_PORT=$((wport + 1000)) $bin/wrs &" >> "$commands"
echo "BASELINE_BIND=127.0.0.1 BASELINE_PORT=$bport $bin/baseline-relay &" >> "$commands"
say "wrs on :$wport (pid $wpid), baseline-relay on :$bport (pid $bpid); results in $work"

# ---- machine description
{
  echo "date:        $(date -u '+%Y-%m-%d %H:%M UTC')"
  echo "commit:      $(git rev-parse --short HEAD 2>/dev/null || echo ?)$(git diff --quiet HEAD -- src Cargo.toml 2>/dev/null || echo ' (+ uncommitted changes in src/)')"
  echo "cpu:         $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//') ($(nproc) cores visible)"
  echo "memory:      $(awk '/MemTotal/ {printf "%.1f GiB", $2/1048576}' /proc/meminfo)"
  echo "kernel:      $(uname -sr)"
  echo "rustc:       $(rustc --version 2>/dev/null)"
  echo "profile:     $profile; mode $mode: $runs run(s) per point, ${duration} s measured after ${warmup} s warm-up"
  echo "load avg:    $(cut -d' ' -f1-3 /proc/loadavg) (at start)"
  echo "servers:     wrs with default settings (2 HTTP workers = cores); baseline-relay with 2 tokio workers"
  [ -z "$against" ] || echo "baseline:    replaced by the wrs binary $against (--against)"
  echo "generator:   wrs-bench, 2 tokio worker threads, on the same machine"
} > "$work/machine.txt"
echo "$invocation" > "$work/invocation.txt"

failures=0
strict=
[ "$mode" = smoke ] && strict=--strict
# bench LABEL ARGS...: one run of wrs-bench against the server named LABEL
bench() {
  local label=$1; shift
  local url pid
  if [ "$label" = wrs ]; then url="http://127.0.0.1:$wport"; pid=$wpid; else url="http://127.0.0.1:$bport"; pid=$bpid; fi
  local cmd=("$bin/wrs-bench" --url "$url" --label "$label" --pid "$pid" --duration "$duration" --warmup "$warmup" --json "$results" --no-header $strict "$@")
  echo "${cmd[*]}" >> "$commands"
  local rc=0
  timeout 300 "${cmd[@]}" > "$work/last.out" 2>&1 || rc=$?
  cat "$work/last.out" >> "$log"
  cat "$work/last.out" >&2
  if [ "$rc" != 0 ]; then
    say "FAILED (exit $rc): $label $*"
    failures=$((failures + 1))
  fi
}
both() { bench wrs "$@"; bench baseline "$@"; }
median() { "$bin/wrs-bench" median --results "$results" "$@"; }

if [ "$mode" = full ]; then
  conns=10000; step=1000; fractions="0.1 0.25 0.5 0.75 0.9"; subs_list="10 100 1000"
elif [ "$mode" = quick ]; then
  conns=10000; step=2500; fractions="0.25 0.5 0.9"; subs_list="10 100 1000"
else
  conns=300; step=100; fractions="0.5"; subs_list="10"
fi

# ---- max-rate scenarios, alternating servers
for run in $(seq 1 "$runs"); do
  say "round $run/$runs"
  for s in $subs_list; do both pubsub --publishers 1 --subscribers "$s" --size 64; done
  [ "$mode" = smoke ] || both pubsub --publishers 10 --subscribers 10 --size 64
  both echo --clients 50 --size 64
  both api --clients 50
  # the baseline only echoes and broadcasts: push-pull and fan-in-out are wrs only
  bench wrs pushpull --workers 10 --size 64
  bench wrs fanout --workers 10
  # idle memory is measured on fresh processes (freed memory would be reused otherwise)
  restart_servers
  both conns --conns "$conns" --step "$step" --hold 1
done

# ---- fixed-rate runs relative to wrs's measured maximum; the repeated points (half the
# maximum) are interleaved with the rest so a burst of outside load does not hit all of them
max=$(median --scenario pubsub --key 1x100 --field rate 2>/dev/null || median --scenario pubsub --key 1x10 --field rate)
subs=100
median --scenario pubsub --key 1x100 --field rate >/dev/null 2>&1 || subs=10
max10=$(median --scenario pubsub --key 1x10 --field rate)
rate10=$(awk -v m="$max10" 'BEGIN { r = m * 0.5 / 10; if (r < 1) r = 1; printf "%.0f", r }')
api_max=$(median --scenario api --key 50 --field rate)
api_half=$(awk -v m="$api_max" 'BEGIN { printf "%.0f", m / 2 }')
for run in $(seq 1 "$runs"); do
  for f in $fractions; do
    [ "$run" = 1 ] || [ "$f" = 0.5 ] || continue
    rate=$(awk -v m="$max" -v f="$f" -v s="$subs" 'BEGIN { r = m * f / s; if (r < 1) r = 1; printf "%.0f", r }')
    both pubsub --publishers 1 --subscribers "$subs" --size 64 --rate "$rate" --window 512
  done
  # the 1→10 latency at half its own maximum, too
  [ "$subs" != 100 ] || both pubsub --publishers 1 --subscribers 10 --size 64 --rate "$rate10" --window 512
  bench wrs api --clients 50 --rate "$api_half"
done

# ---- the thesis' cluster plans, against one node (pass more --url to point it at a cluster)
for _ in $(seq 1 "$runs"); do
  if [ "$mode" = smoke ]; then
    bench wrs cluster --plan all --clients 20
  else
    bench wrs cluster --plan all
  fi
done

# ---- optional: where does wrs spend its CPU? (one extra run each, not in the medians)
profile_run() {
  local name=$1; shift
  local data="$work/perf-$name.data"
  perf record -e cpu-clock -F 999 -g -p "$wpid" -o "$data" -- sleep "$(awk -v d="$duration" -v w="$warmup" 'BEGIN { print d + w }')" > /dev/null 2>&1 &
  local ppid=$!
  echo "perf record -e cpu-clock -F 999 -g -p <wrs pid> -o perf-$name.data -- sleep <warmup+duration> &  # during:" >> "$commands"
  "$bin/wrs-bench" --url "http://127.0.0.1:$wport" --label wrs-perf --duration "$duration" --warmup "$warmup" --no-header "$@" >&2 || true
  echo "$bin/wrs-bench --url http://127.0.0.1:$wport --label wrs-perf --duration $duration --warmup $warmup $*" >> "$commands"
  wait "$ppid" || true
  # (no pipelines into head here: with pipefail a SIGPIPE would end the script)
  perf report -i "$data" --no-children --sort dso --stdio -g none > "$work/perf-$name.dso" 2>/dev/null || true
  perf report -i "$data" --no-children --sort symbol --stdio -g none > "$work/perf-$name.sym" 2>/dev/null || true
  {
    echo "# perf report --no-children --sort dso: share of CPU samples by binary"
    awk '/%/ { gsub(/ {2,}/, "  "); print }' "$work/perf-$name.dso" | awk 'NR <= 6'
    echo "# perf report --no-children --sort symbol: top symbols"
    awk '/%/ { gsub(/ {2,}/, "  "); sub(/ *- *- *$/, ""); print substr($0, 1, 160) }' "$work/perf-$name.sym" | awk 'NR <= 40'
  } > "$work/perf-$name.txt" || true
}
if [ -n "$perf" ]; then
  if command -v perf > /dev/null; then
    say "profiling wrs (perf)"
    profile_run pubsub pubsub --publishers 1 --subscribers 100 --size 64
    profile_run api api --clients 50
    profile_run echo echo --clients 50 --size 64
  else
    say "warning: --perf given but perf is not installed (apt-get install linux-perf)"
  fi
fi

# ---- the same plans against a 3-node cluster on this machine (full and quick runs; skipped
# with a note when the build has no clustering or the nodes do not form one cluster)
cluster_nodes() {
  # number of nodes that GET /cluster on port $1 lists, with a leader elected
  local body
  body=$( (exec 3<>"/dev/tcp/127.0.0.1/$1" && printf 'GET /cluster HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n' >&3 && timeout 2 cat <&3) 2>/dev/null || true)
  case "$body" in *'"leader":null'*|*'"leader": null'*) echo 0; return ;; esac
  echo "$body" | grep -o '"role"' | wc -l
}
if [ "$mode" != smoke ] && [ -z "${BENCH_NO_CLUSTER:-}" ]; then
  kill "$wpid" "$bpid" 2>/dev/null || true
  wait "$wpid" "$bpid" 2>/dev/null || true
  cports=(); curls=()
  for i in 0 1 2; do cports+=("$(pick_port $((wport + 10 + 2 * i)))"); done
  join="127.0.0.1:${cports[0]},127.0.0.1:${cports[1]},127.0.0.1:${cports[2]}"
  for i in 0 1 2; do
    p=${cports[$i]}
    WRS_BIND=127.0.0.1 WRS_API_PORT=$p WRS_NODE_PORT=$((p + 1000)) WRS_DOMAIN=127.0.0.1 \
      WRS_PUBLIC_API_PORT=$p WRS_JOIN=$join WRS_CLUSTER_SECRET=bench \
      "$bin/wrs" > "$work/wrs-node$i.log" 2>&1 &
    pids+=("$!")
    echo "WRS_BIND=127.0.0.1 WRS_API_PORT=$p WRS_NODE_PORT=$((p + 1000)) WRS_DOMAIN=127.0.0.1 WRS_PUBLIC_API_PORT=$p WRS_JOIN=$join WRS_CLUSTER_SECRET=bench $bin/wrs &" >> "$commands"
    curls+=(--url "http://127.0.0.1:$p")
  done
  formed=
  for _ in $(seq 1 60); do
    sleep 0.5
    if [ "$(cluster_nodes "${cports[0]}")" = 3 ] && [ "$(cluster_nodes "${cports[2]}")" = 3 ]; then formed=1; break; fi
  done
  if [ -n "$formed" ]; then
    say "3-node cluster formed on ports ${cports[*]}"
    for _ in $(seq 1 "$runs"); do
      cmd=("$bin/wrs-bench" "${curls[@]}" --label wrs --duration "$duration" --warmup "$warmup" --json "$results" --no-header cluster --plan all)
      echo "${cmd[*]}" >> "$commands"
      rc=0
      timeout 300 "${cmd[@]}" > "$work/last.out" 2>&1 || rc=$?
      cat "$work/last.out" >> "$log"; cat "$work/last.out" >&2
      [ "$rc" = 0 ] || { say "FAILED (exit $rc): 3-node cluster plans"; failures=$((failures + 1)); }
    done
  else
    say "note: the 3 nodes did not form one cluster within 30 s; 3-node plans skipped"
    echo "# 3-node cluster did not form within 30 s; its plans were skipped" >> "$commands"
  fi
fi

cleanup; trap - EXIT
echo "$bin/wrs-bench report --results $results --meta $work --out $out --plots $(dirname "$out")/bench" >> "$commands"

# ---- report
if [ "$mode" = smoke ]; then
  "$bin/wrs-bench" report --results "$results" --meta "$work" --out "$work/benchmarks.md" --plots "$work/bench"
  say "smoke: $(wc -l < "$results") runs, $failures failed, $(( $(date +%s) - start_all )) s; report in $work/benchmarks.md"
  [ "$failures" = 0 ] || exit 1
  exit 0
fi
plots="$(dirname "$out")/bench"
mkdir -p "$plots"
[ ! -f "$plots/notes.md" ] || cp "$plots/notes.md" "$work/notes.md"
cp "$results" "$plots/results.jsonl"
# Sections below the marker come from other scripts (bench-durable.sh, the post scenario): kept.
marker='<!-- sections below are not generated by scripts/bench.sh; it keeps them -->'
kept="$work/kept-sections.md"; : > "$kept"
[ ! -f "$out" ] || awk -v m="$marker" '$0 == m { on = 1 } on' "$out" > "$kept"
"$bin/wrs-bench" report --results "$results" --meta "$work" --out "$out" --plots "$plots"
if [ -s "$kept" ]; then { echo; cat "$kept"; } >> "$out"; fi
say "$(wc -l < "$results") runs, $failures failed, $(( $(date +%s) - start_all )) s; wrote $out and $plots/"
[ "$failures" = 0 ] || say "warning: $failures run(s) failed; see $log"
