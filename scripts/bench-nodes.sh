# Sourced by the scripts/bench-*.sh that start their own wrs nodes (durable, post,
# cluster-cpu), after they set `name` (results go to target/bench/<name>-<stamp>/), `help_lines`
# (the lines of their header that --help prints) and the defaults `runs` and `duration`:
# parses --runs / --duration, makes the results folder (`work`, `results`), builds the release
# binaries (`bin`), and starts and stops wrs nodes on free loopback ports (`start`, `cleanup`).

warmup=1
while [ $# -gt 0 ]; do
  case "$1" in
    --runs) runs="$2"; shift ;;
    --duration) duration="$2"; shift ;;
    -h|--help) sed -n "$help_lines" "$0"; exit 0 ;;
    *) echo "$(basename "$0"): unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done

say() { echo "$(basename "$0"): $*" >&2; }
work="target/bench/$name-$(date -u +%Y%m%dT%H%M%SZ)"
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

# start NODES DURABLE RUN [VAR=VALUE...]: NODES wrs processes (one cluster when 3), each on an
# empty data dir when DURABLE is 1, else in memory, each with the extra environment VAR=VALUE...
# (e.g. WRS_CONNECT_TO_OWNER=true); sets `urls` and waits until every node answers and (for 3)
# all agree on a leader, all of them voters.
start() {
  local n=$1 durable=$2 run=$3 join="" ports=()
  shift 3
  local extra=("$@")
  for i in $(seq 0 $((n - 1))); do ports+=("$(pick_port $((18300 + 20 * i + 2 * run)))"); done
  if [ "$n" -gt 1 ]; then
    join=$(printf '127.0.0.1:%s,' "${ports[@]}"); join=${join%,}
  fi
  urls=()
  for i in $(seq 0 $((n - 1))); do
    local p=${ports[$i]} dir=""
    if [ "$durable" = 1 ]; then dir="$work/data-n$n-r$run-$i"; mkdir -p "$dir"; fi
    env WRS_BIND=127.0.0.1 WRS_API_PORT=$p WRS_NODE_PORT=$((p + 1000)) WRS_DOMAIN=127.0.0.1 \
      WRS_JOIN=$join WRS_CLUSTER_SECRET=bench WRS_DATA_DIR=$dir ${extra[@]+"${extra[@]}"} \
      "$bin/wrs" > "$work/wrs-n$n-d$durable-r$run-$i${extra[*]:+-extra}.log" 2>&1 &
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
  say "the $n-node setup (durable=$durable) did not come up; see $work"; exit 1
}
