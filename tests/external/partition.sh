#!/usr/bin/env bash
# A partitioned node refuses writes with 503 while the majority goes on, and rejoins after the
# partition heals (REQUIREMENTS §5). Three wrs nodes, each in a network namespace of its own,
# joined by a bridge in a fourth namespace:
#
#   wrs-n1-PID (10.213.7.11) ─ eth0 ══ vb1 ─┐
#   wrs-n2-PID (10.213.7.12) ─ eth0 ══ vb2 ─┼─ br0   (namespace wrs-br-PID)
#   wrs-n3-PID (10.213.7.13) ─ eth0 ══ vb3 ─┘
#
# Phase 1 cuts a follower off (its bridge port down), phase 2 the leader (iptables DROP both
# ways inside its namespace). Every client request runs inside a node's namespace against that
# node's loopback; nothing is sent from the root namespace to the namespaces' addresses.
#
#   usage: partition.sh WRS_BINARY            (as root; needs ip (iproute2), iptables, curl)
# exit 0: pass; 1: fail (node logs are printed); 77: cannot run here (not root, a tool missing,
# network namespaces not permitted).
set -uo pipefail

BIN="${1:?usage: partition.sh WRS_BINARY}"
SKIP=77
T0=$(date +%s%N)

log() {
  local ms=$(( ($(date +%s%N) - T0) / 1000000 ))
  printf '[partition %3d.%03ds] %s\n' $(( ms / 1000 )) $(( ms % 1000 )) "$*"
}
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
cannot_run() { echo "partition.sh: cannot run: $*" >&2; exit "$SKIP"; }

# --- can this machine run it? --------------------------------------------------------------
[ "$(id -u)" = 0 ] || cannot_run "needs root (network namespaces, iptables)"
for tool in ip iptables curl; do
  command -v "$tool" >/dev/null 2>&1 || cannot_run "'$tool' is not installed (scripts/install-test-tools.sh)"
done
[ -x "$BIN" ] || { echo "partition.sh: no executable wrs binary at $BIN" >&2; exit 1; }
BIN="$(cd "$(dirname "$BIN")" && pwd)/$(basename "$BIN")"

BR="wrs-br-$$"
NS=("" "wrs-n1-$$" "wrs-n2-$$" "wrs-n3-$$")
IP=("" 10.213.7.11 10.213.7.12 10.213.7.13)
API=7080
PEER=7081
JOIN="${IP[1]}:$API,${IP[2]}:$API,${IP[3]}:$API"
SECRET="wrs-partition-test-secret-0123456789"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/wrs-partition.XXXXXX")"
PID=("" "" "" "")
ID=("" "" "" "")
CREATED=()
CREATED_NS=()
OK=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # Everything running inside our namespaces was started by this script: the nodes and
  # any curl still waiting for an answer.
  local ns p
  {
    for ns in "${CREATED_NS[@]}"; do
      for p in $(ip netns pids "$ns"); do kill -KILL "$p"; done
    done
    for i in 1 2 3; do
      if [ -n "${PID[$i]}" ]; then kill -KILL "${PID[$i]}"; wait "${PID[$i]}"; fi
    done
  } 2>/dev/null
  for ns in "${CREATED_NS[@]}"; do
    ip netns del "$ns" 2>/dev/null || echo "partition.sh: could not delete namespace $ns" >&2
  done
  if { [ "$OK" = 1 ] && [ "$rc" = 0 ]; } || [ "$rc" = "$SKIP" ]; then
    rm -rf "$TMP"
  else
    [ "$rc" = 0 ] && rc=1
    for i in 1 2 3; do
      if [ -f "$TMP/node$i.log" ]; then
        echo "----- node $i (${IP[$i]}, id ${ID[$i]:-?}) log, last 80 lines ($TMP/node$i.log) -----"
        tail -n 80 "$TMP/node$i.log"
      fi
    done
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
  echo "FAIL: $*"
  exit 1
}

# --- the network -----------------------------------------------------------------------------
if ! err=$(ip netns add "$BR" 2>&1); then
  cannot_run "'ip netns add' is not permitted here: $err"
fi
CREATED_NS+=("$BR")
setup() {
  ip -n "$BR" link add br0 type bridge || return 1
  ip -n "$BR" link set br0 up || return 1
  for i in 1 2 3; do
    ip netns add "${NS[$i]}" || return 1
    CREATED_NS+=("${NS[$i]}")
    ip -n "$BR" link add "vb$i" type veth peer name eth0 netns "${NS[$i]}" || return 1
    ip -n "$BR" link set "vb$i" master br0 || return 1
    ip -n "$BR" link set "vb$i" up || return 1
    ip -n "${NS[$i]}" link set lo up || return 1
    ip -n "${NS[$i]}" addr add "${IP[$i]}/24" dev eth0 || return 1
    ip -n "${NS[$i]}" link set eth0 up || return 1
  done
}
setup || fail "setting up the namespaces, veths and bridge failed"
log "namespaces $BR ${NS[1]} ${NS[2]} ${NS[3]} on 10.213.7.0/24"

# --- HTTP inside a node's namespace ---------------------------------------------------------
# http I METHOD PATH [BODY] [MAX_S]: a request to node I's own API (its loopback, inside its
# namespace). Sets H_CODE (000 = no answer), H_BODY, H_MS, H_ERR.
http() {
  local i=$1 method=$2 path=$3 body=${4-} max=${5-5} start args f="$TMP/http.$BASHPID"
  args=(-sS -m "$max" -o "$f.body" -w '%{http_code}' -X "$method")
  if [ -n "$body" ]; then args+=(-H 'content-type: application/json' --data "$body"); fi
  start=$(now_ms)
  : > "$f.body"
  H_CODE=$(ip netns exec "${NS[$i]}" curl "${args[@]}" "http://127.0.0.1:$API$path" 2>"$f.err")
  H_MS=$(( $(now_ms) - start ))
  H_BODY=$(cat "$f.body")
  H_ERR=$(cat "$f.err")
  [ -n "$H_CODE" ] || H_CODE=000
}

# The same as a background job whose results land in files: bg_post I TAG.
bg_post() {
  local i=$1 tag=$2
  (
    http "$i" POST /channels '{"pattern":"echo"}' 12
    printf '%s\n' "$H_CODE" > "$TMP/$tag.code"
    printf '%s\n' "$H_MS" > "$TMP/$tag.ms"
    printf '%s\n' "$H_BODY" > "$TMP/$tag.body"
    printf '%s\n' "$H_ERR" > "$TMP/$tag.err"
  ) &
  BG_PID=$!
}

# view I: GET /cluster on node I. Sets V_ID, V_LEADER (empty = none), V_N (members),
# V_LEARNERS, V_ROLE (node I's own role), V_TERM. Returns 1 when there is no 200 answer.
view() {
  local i=$1 nodes
  http "$i" GET /cluster "" 3
  [ "$H_CODE" = 200 ] || { V_LEADER=""; return 1; }
  V_ID=$(printf '%s' "$H_BODY" | sed -n 's/^{"data":{"id":\([0-9]*\),.*/\1/p')
  V_LEADER=$(printf '%s' "$H_BODY" | grep -o '"leader":[0-9]*' | head -n 1 | cut -d: -f2)
  V_TERM=$(printf '%s' "$H_BODY" | grep -o '"term":[0-9]*' | head -n 1 | cut -d: -f2)
  nodes=${H_BODY#*\"nodes\":\[}
  V_N=$(printf '%s' "$nodes" | grep -o '{[^}]*}' | wc -l)
  V_LEARNERS=$(printf '%s' "$nodes" | grep -o '"role":"learner"' | wc -l)
  V_ROLE=$(printf '%s' "$nodes" | grep -o "{\"id\":$V_ID,[^}]*}" | grep -o '"role":"[a-z]*"' | cut -d'"' -f4)
  return 0
}

# index_of ID -> the node index whose Raft id is ID.
index_of() {
  local i
  for i in 1 2 3; do
    if [ "${ID[$i]}" = "$1" ]; then echo "$i"; return 0; fi
  done
  echo "?"
}

# poll DEADLINE_S WHAT CHECK...: run CHECK every 100 ms until it succeeds or the deadline
# passes (then fail, with the last LAST_WHY the check left).
poll() {
  local limit=$1 what=$2 end i
  shift 2
  [ "$limit" -ge 1 ] || limit=1
  end=$(( $(now_ms) + limit * 1000 ))
  LAST_WHY=""
  while :; do
    if "$@"; then
      log "ok: $what ($(( $(now_ms) - end + limit * 1000 )) ms)"
      return 0
    fi
    for i in 1 2 3; do
      if [ -n "${PID[$i]}" ] && ! kill -0 "${PID[$i]}" 2>/dev/null; then
        fail "$what: node $i (pid ${PID[$i]}) exited"
      fi
    done
    if [ "$(now_ms)" -ge "$end" ]; then
      fail "$what: not within ${limit} s; last: $LAST_WHY"
    fi
    sleep 0.1
  done
}

# --- checks (return 0/1, leave LAST_WHY) ---------------------------------------------------
# nodes_agree I...: every listed node sees all 3 members as voters and the same leader, which
# is one of the listed nodes' ids. Sets AGREED_LEADER.
nodes_agree() {
  local i leader="" want="${#@}"
  for i in "$@"; do
    if ! view "$i"; then LAST_WHY="node $i: GET /cluster $H_CODE $H_ERR"; return 1; fi
    if [ "$V_N" != 3 ] || [ "$V_LEARNERS" != 0 ] || [ -z "$V_LEADER" ]; then
      LAST_WHY="node $i: $H_BODY"; return 1
    fi
    if [ -z "$leader" ]; then leader=$V_LEADER; fi
    if [ "$V_LEADER" != "$leader" ]; then
      LAST_WHY="node $i sees leader $V_LEADER, an earlier node $leader"; return 1
    fi
  done
  AGREED_LEADER=$leader
  [ "$want" -gt 0 ]
}

all_formed() {
  local i
  nodes_agree 1 2 3 || return 1
  for i in 1 2 3; do
    view "$i" || return 1
    ID[$i]=$V_ID
  done
  if [ "${ID[1]}" = "${ID[2]}" ] || [ "${ID[1]}" = "${ID[3]}" ] || [ "${ID[2]}" = "${ID[3]}" ]; then
    LAST_WHY="two nodes share an id: ${ID[*]}"; return 1
  fi
  [ "$(index_of "$AGREED_LEADER")" != "?" ] || { LAST_WHY="leader $AGREED_LEADER is none of ${ID[*]}"; return 1; }
}

# lists I CHANNEL...: GET /channels on node I lists every given channel id.
lists() {
  local i=$1 c
  shift
  http "$i" GET /channels "" 8
  if [ "$H_CODE" != 200 ]; then LAST_WHY="node $i: GET /channels $H_CODE $H_ERR $H_BODY"; return 1; fi
  for c in "$@"; do
    case "$H_BODY" in
      *"\"id\":\"$c\""*) ;;
      *) LAST_WHY="node $i does not list channel $c: $H_BODY"; return 1 ;;
    esac
  done
}

# channel_ids I: the sorted channel ids node I lists (one per line).
channel_ids() {
  http "$1" GET /channels "" 8
  [ "$H_CODE" = 200 ] || return 1
  printf '%s' "$H_BODY" | grep -o '"id":"[^"]*"' | cut -d'"' -f4 | sort
}

ready_is() {
  local i=$1 want=$2
  http "$i" GET /readyz "" 3
  [ "$H_CODE" = "$want" ] || { LAST_WHY="node $i: GET /readyz $H_CODE $H_BODY"; return 1; }
}

# create I: POST /channels through node I must answer 201; sets CH to the new channel's id.
create() {
  local i=$1
  http "$i" POST /channels '{"pattern":"echo"}' 12
  if [ "$H_CODE" != 201 ]; then
    LAST_WHY="node $i: POST /channels $H_CODE after $H_MS ms $H_ERR $H_BODY"; return 1
  fi
  CH=$(printf '%s' "$H_BODY" | grep -o '"id":"[^"]*"' | head -n 1 | cut -d'"' -f4)
  [ -n "$CH" ] || { LAST_WHY="node $i: 201 without data.id: $H_BODY"; return 1; }
  CREATED+=("$CH")
}

# The answer of a background write through a cut-off node: 503 cluster_unavailable, JSON, in
# at most 8 s.
check_refused() {
  local tag=$1 who=$2 code ms body
  code=$(cat "$TMP/$tag.code"); ms=$(cat "$TMP/$tag.ms"); body=$(cat "$TMP/$tag.body")
  if [ "$code" = 201 ]; then
    fail "$who accepted a write while cut off from the majority (201 after $ms ms): $body"
  fi
  if [ "$code" != 503 ]; then
    fail "$who: POST /channels answered $code after $ms ms, not 503: $(cat "$TMP/$tag.err") $body"
  fi
  case "$body" in
    *'"error":"cluster_unavailable"'*) ;;
    *) fail "$who: 503 without the cluster_unavailable JSON body: $body" ;;
  esac
  case "$body" in
    *'"message":"'?*) ;;
    *) fail "$who: 503 body without a message: $body" ;;
  esac
  [ "$ms" -le 8000 ] || fail "$who: the 503 took $ms ms (more than 8 s)"
  log "ok: $who refused the write: 503 cluster_unavailable after $ms ms"
}

# rejoined I OLD_LEADER_INDEX CHANNEL...: node I agrees with the others on the leader, is a
# follower, is ready, and lists the channels.
rejoined() {
  local i=$1
  shift
  nodes_agree 1 2 3 || return 1
  view "$i" || { LAST_WHY="node $i: GET /cluster $H_CODE"; return 1; }
  [ "$V_ROLE" = follower ] || { LAST_WHY="node $i's own role is '$V_ROLE': $H_BODY"; return 1; }
  ready_is "$i" 200 || return 1
  lists "$i" "$@"
}

# --- start the nodes ---------------------------------------------------------------------------
for i in 1 2 3; do
  mkdir -p "$TMP/node$i"
  (
    cd "$TMP/node$i" || exit 1
    exec ip netns exec "${NS[$i]}" env -i PATH="$PATH" RUST_LOG=info \
      WRS_BIND=0.0.0.0 WRS_DOMAIN="${IP[$i]}" WRS_API_PORT=$API WRS_NODE_PORT=$PEER \
      WRS_JOIN="$JOIN" WRS_CLUSTER_SECRET="$SECRET" WRS_NODE_HEARTBEAT=200 \
      WRS_NODE_MIN_ELECTION_TIMEOUT=800 WRS_NODE_MAX_ELECTION_TIMEOUT=1200 \
      "$BIN" > "$TMP/node$i.log" 2>&1
  ) &
  PID[$i]=$!
done
poll 30 "one cluster of 3 voters with one leader" all_formed
L=$(index_of "$AGREED_LEADER")
log "ids: n1=${ID[1]} n2=${ID[2]} n3=${ID[3]}; leader n$L"
poll 10 "POST /channels through n1 answers 201" create 1
C0=$CH
poll 10 "every node lists channel $C0" eval 'lists 1 $C0 && lists 2 $C0 && lists 3 $C0'

# --- phase 1: a follower is cut off (its bridge port down) -------------------------------------
F=$(( L % 3 + 1 ))
M=$(( F % 3 + 1 ))
[ "$M" = "$L" ] && M=$(( M % 3 + 1 ))
log "phase 1: partition follower n$F (${IP[$F]}); majority n$L (leader) + n$M"
ip -n "$BR" link set "vb$F" down || fail "ip link set vb$F down"
P1=$(now_ms)
bg_post "$F" p1   # a write through the cut-off follower, right after the cut
P1_POST=$BG_PID
poll 8 "the majority still accepts writes: POST through leader n$L is 201" create "$L"
C1=$CH
poll 8 "the majority still accepts writes: POST through follower n$M is 201" create "$M"
C2=$CH
poll 8 "n$L and n$M list $C1 and $C2" eval 'lists $L $C1 $C2 && lists $M $C1 $C2'
http "$L" GET /channels "" 8
log "note: GET /channels on n$L answered $H_CODE in $H_MS ms while n$F is cut off (it asks each channel's owner for live numbers)"
poll 8 "n$L and n$M still agree on a leader among themselves" eval \
  'nodes_agree $L $M && [ "$(index_of "$AGREED_LEADER")" != "$F" ]'
poll $(( 8 - ($(now_ms) - P1) / 1000 )) "cut-off n$F: /readyz turns 503" ready_is "$F" 503
wait "$P1_POST"
check_refused p1 "cut-off follower n$F (request sent right after the cut)"
bg_post "$F" p1b  # and once more, now that it knows it has no leader
wait "$BG_PID"
check_refused p1b "cut-off follower n$F (request sent once it had no leader)"

log "phase 1: heal (vb$F up)"
ip -n "$BR" link set "vb$F" up || fail "ip link set vb$F up"
poll 15 "n$F rejoins: same leader as the others, follower, ready, lists $C1 $C2" \
  rejoined "$F" "$C0" "$C1" "$C2"
poll 8 "writes through the healed n$F are 201 again" create "$F"
C3=$CH
poll 8 "every node lists $C3" eval 'lists 1 $C3 && lists 2 $C3 && lists 3 $C3'

# --- phase 2: the leader is cut off (iptables DROP both ways in its namespace) -----------------
poll 8 "all 3 agree on the leader before phase 2" nodes_agree 1 2 3
OLD=$(index_of "$AGREED_LEADER")
A=$(( OLD % 3 + 1 ))
B=$(( A % 3 + 1 ))
log "phase 2: partition leader n$OLD (${IP[$OLD]}); majority n$A + n$B"
for j in "$A" "$B"; do
  ip netns exec "${NS[$OLD]}" iptables -A INPUT -s "${IP[$j]}" -j DROP || fail "iptables INPUT"
  ip netns exec "${NS[$OLD]}" iptables -A OUTPUT -d "${IP[$j]}" -j DROP || fail "iptables OUTPUT"
done
P2=$(now_ms)
bg_post "$OLD" p2   # a write through the old leader, right after the cut
P2_POST=$BG_PID
new_leader() {
  nodes_agree "$A" "$B" || return 1
  NEW=$(index_of "$AGREED_LEADER")
  [ "$NEW" = "$A" ] || [ "$NEW" = "$B" ] || { LAST_WHY="the majority still follows n$NEW"; return 1; }
}
poll 10 "the majority n$A + n$B elects a new leader" new_leader
log "new leader: n$NEW (id ${ID[$NEW]})"
poll 8 "the majority accepts writes: POST through new leader n$NEW is 201" create "$NEW"
C4=$CH
OTHER=$A; [ "$NEW" = "$A" ] && OTHER=$B
poll 8 "the majority accepts writes: POST through n$OTHER is 201" create "$OTHER"
C5=$CH
poll $(( 10 - ($(now_ms) - P2) / 1000 )) "cut-off old leader n$OLD: /readyz turns 503" ready_is "$OLD" 503
old_stepped_down() {
  view "$OLD" || { LAST_WHY="GET /cluster $H_CODE"; return 1; }
  [ "$V_ROLE" != leader ] || { LAST_WHY="n$OLD still says it leads: $H_BODY"; return 1; }
}
poll 2 "cut-off old leader n$OLD no longer calls itself leader" old_stepped_down
wait "$P2_POST"
check_refused p2 "cut-off old leader n$OLD (request sent right after the cut)"
bg_post "$OLD" p2b
wait "$BG_PID"
check_refused p2b "cut-off old leader n$OLD (request sent once it had no leader)"

log "phase 2: heal (iptables -F in ${NS[$OLD]})"
ip netns exec "${NS[$OLD]}" iptables -F INPUT || fail "iptables -F INPUT"
ip netns exec "${NS[$OLD]}" iptables -F OUTPUT || fail "iptables -F OUTPUT"
poll 15 "old leader n$OLD rejoins as a follower of the new leader and lists $C4 $C5" \
  rejoined "$OLD" "$C0" "$C1" "$C2" "$C3" "$C4" "$C5"
final_leader=$(index_of "$AGREED_LEADER")
[ "$final_leader" = "$NEW" ] || log "note: leadership moved again after the heal: n$NEW -> n$final_leader"
poll 8 "writes through the healed n$OLD are 201 again" create "$OLD"
C6=$CH

# --- the end: one state everywhere ---------------------------------------------------------------
same_state() {
  local a b c want
  a=$(channel_ids 1) || { LAST_WHY="n1 GET /channels $H_CODE"; return 1; }
  b=$(channel_ids 2) || { LAST_WHY="n2 GET /channels $H_CODE"; return 1; }
  c=$(channel_ids 3) || { LAST_WHY="n3 GET /channels $H_CODE"; return 1; }
  want=$(printf '%s\n' "${CREATED[@]}" | sort)
  [ "$a" = "$b" ] && [ "$b" = "$c" ] || { LAST_WHY="lists differ: n1 [$a] n2 [$b] n3 [$c]"; return 1; }
  if [ "$a" != "$want" ]; then
    LAST_WHY="the nodes list [$(echo $a)], the 201 answers created [$(echo $want)]"
    return 1
  fi
}
poll 8 "all 3 nodes list exactly the ${#CREATED[@]} channels that were answered 201" same_state
log "channels: $C0 $C1 $C2 $C3 $C4 $C5 $C6"
OK=1
log "PASS: a partitioned node refuses writes with 503 while the majority goes on, and rejoins after the heal"
