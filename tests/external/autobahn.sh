#!/usr/bin/env bash
# Runs the Autobahn|Testsuite fuzzing client (cases 1.* to 10.*) against a WebSocket URL and
# checks reports/index.json.
#   usage: autobahn.sh WS_URL OUTDIR
# exit 0: every case passed (no FAILED behavior); 1: failures; 77: the tool is not installed.
set -euo pipefail
URL="$1"
OUT="$2"
HERE="$(cd "$(dirname "$0")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
TOOLS="${WRS_TEST_TOOLS:-$ROOT/target/test-tools}"
mkdir -p "$OUT"
cd "$OUT"
if [ -x "$TOOLS/ab-py27/bin/wstest" ]; then
  cat > spec.json <<JSON
{"outdir": "./reports", "servers": [{"agent": "wrs", "url": "$URL"}],
 "cases": ["1.*", "2.*", "3.*", "4.*", "5.*", "6.*", "7.*", "8.*", "9.*", "10.*"],
 "exclude-cases": ["12.*", "13.*"], "exclude-agent-cases": {}}
JSON
  "$TOOLS/ab-py27/bin/wstest" -m fuzzingclient -s spec.json > wstest.log 2>&1 || {
    echo "wstest exited with $?; last lines of its log:"; tail -20 wstest.log; }
elif [ -x "$TOOLS/kosoku/bin/kosoku" ]; then
  HOSTPATH="${URL#ws://}"
  "$TOOLS/kosoku/bin/kosoku" -m fuzzingclient "$HOSTPATH" -x '12.*' -x '13.*' -o reports/ \
    > kosoku.log 2>&1 || { echo "kosoku exited with $?"; tail -20 kosoku.log; }
else
  echo "Autobahn fuzzingclient not installed under $TOOLS (run scripts/install-test-tools.sh)"
  exit 77
fi
python3 "$HERE/autobahn_check.py" reports/index.json
