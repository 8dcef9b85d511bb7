#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (cases 1.* to 10.*; 12.* and 13.* excluded)
# against a WebSocket URL and checks the reports' index.json files.
#   usage: autobahn.sh WS_URL OUTDIR
# exit 0: every case ran and none is FAILED; 1: failures; 77: the tool is not installed.
# Most cases idle ~1 s by design (wstest waits for the TCP close), so the cases run in four
# shards side by side (each shard opens its own connections to the same echo channel).
set -euo pipefail
URL="$1"
OUT="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TOOLS="${WRS_TEST_TOOLS:-$ROOT/target/test-tools}"
mkdir -p "$OUT"
cd "$OUT"
rm -rf reports
if [ -x "$TOOLS/ab-py27/bin/wstest" ]; then
  shards=(
    '"1.*", "2.*", "3.*", "4.*", "5.*", "10.*"'
    '"6.1.*", "6.2.*", "6.3.*", "6.4.*", "6.5.*", "6.6.*", "6.7.*", "6.8.*", "6.9.*", "6.10.*", "6.11.*", "6.12.*"'
    '"6.13.*", "6.14.*", "6.15.*", "6.16.*", "6.17.*", "6.18.*", "6.19.*", "6.20.*", "6.21.*", "6.22.*", "6.23.*", "8.*"'
    '"7.*", "9.*"'
  )
  pids=()
  for i in "${!shards[@]}"; do
    cat > "spec-$i.json" <<JSON
{"outdir": "./reports/shard-$i", "servers": [{"agent": "wrs", "url": "$URL"}],
 "cases": [${shards[$i]}], "exclude-cases": ["12.*", "13.*"], "exclude-agent-cases": {}}
JSON
    "$TOOLS/ab-py27/bin/wstest" -m fuzzingclient -s "spec-$i.json" > "wstest-$i.log" 2>&1 &
    pids+=("$!")
  done
  status=0
  for i in "${!pids[@]}"; do
    if ! wait "${pids[$i]}"; then
      echo "wstest shard $i failed; last lines of its log:"
      tail -20 "wstest-$i.log"
      status=1
    fi
  done
  python3 "$HERE/autobahn_check.py" reports/shard-*/index.json || status=1
  exit "$status"
elif [ -x "$TOOLS/kosoku/bin/kosoku" ]; then
  HOSTPATH="${URL#ws://}"
  "$TOOLS/kosoku/bin/kosoku" -m fuzzingclient "$HOSTPATH" -x '12.*' -x '13.*' -o reports/ \
    > kosoku.log 2>&1 || { echo "kosoku exited with $?"; tail -20 kosoku.log; }
  python3 "$HERE/autobahn_check.py" reports/index.json
else
  echo "Autobahn fuzzingclient not installed under $TOOLS (run scripts/install-test-tools.sh)"
  exit 77
fi
