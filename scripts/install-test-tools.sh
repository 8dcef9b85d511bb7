#!/usr/bin/env bash
# Installs the external peers the test suite drives (idempotent: each step is skipped when
# its result already exists):
#   - chromium + chromium-driver (Debian packages) for tests/external/browser_client.py
#   - iproute2, iptables, curl (Debian packages) for tests/external/partition.sh
#   - a Python 3 venv with selenium           -> target/test-tools/selenium
#   - the Autobahn|Testsuite fuzzing client  -> target/test-tools/ab-py27 (Python 2.7 virtualenv)
#     or, when no Python 2.7 exists, kosoku  -> target/test-tools/kosoku (Python 3, same cases)
set -euo pipefail
cd "$(dirname "$0")/.."
TOOLS="${WRS_TEST_TOOLS:-$PWD/target/test-tools}"
mkdir -p "$TOOLS"

log() { echo "[install-test-tools] $*"; }

SUDO=""
if [ "$(id -u)" != 0 ]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi
fi

# --- chromium + chromedriver, iproute2 + iptables + curl -----------------------------------
if [ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] \
    && command -v ip >/dev/null 2>&1 && command -v iptables >/dev/null 2>&1 \
    && command -v curl >/dev/null 2>&1; then
  log "chromium, chromedriver, ip, iptables and curl already installed"
else
  log "installing chromium, chromium-driver, iproute2, iptables and curl"
  apt_log="$TOOLS/apt.log"
  if ! { $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
      -o Dpkg::Use-Pty=0 chromium chromium-driver iproute2 iptables curl; } > "$apt_log" 2>&1; then
    echo "apt-get failed; last lines of $apt_log:"; tail -30 "$apt_log"; exit 1
  fi
fi

# --- python 3 for the venvs --------------------------------------------------------------
PY3="$(command -v python3)"

# --- selenium venv -------------------------------------------------------------------------
if [ -x "$TOOLS/selenium/bin/python" ] && "$TOOLS/selenium/bin/python" -c 'import selenium' 2>/dev/null; then
  log "selenium venv already present"
else
  log "creating selenium venv in $TOOLS/selenium"
  rm -rf "$TOOLS/selenium"
  "$PY3" -m venv "$TOOLS/selenium"
  "$TOOLS/selenium/bin/pip" install -q selenium
fi

# --- Autobahn fuzzingclient ----------------------------------------------------------------
find_py27() {
  if command -v pyenv >/dev/null 2>&1; then
    local p
    p="$(pyenv root)/versions/2.7.18/bin/python"
    if [ -x "$p" ]; then echo "$p"; return 0; fi
  fi
  for c in python2.7 python2; do
    if command -v "$c" >/dev/null 2>&1; then command -v "$c"; return 0; fi
  done
  return 1
}

if [ -x "$TOOLS/ab-py27/bin/wstest" ]; then
  log "autobahn wstest already present"
elif [ -x "$TOOLS/kosoku/bin/kosoku" ]; then
  log "kosoku already present (no python 2.7 for wstest)"
else
  if PY27="$(find_py27)"; then
    log "creating autobahn python 2.7 virtualenv with $PY27"
    if ! [ -x "$TOOLS/ab-tools/bin/virtualenv" ]; then
      rm -rf "$TOOLS/ab-tools"
      "$PY3" -m venv "$TOOLS/ab-tools"
      "$TOOLS/ab-tools/bin/pip" install -q 'virtualenv<20.22'
    fi
    rm -rf "$TOOLS/ab-py27"
    "$TOOLS/ab-tools/bin/virtualenv" -q -p "$PY27" "$TOOLS/ab-py27"
    "$TOOLS/ab-py27/bin/pip" install -q autobahntestsuite==25.10.1
  else
    log "no python 2.7 found; installing kosoku (python 3) instead of wstest"
    rm -rf "$TOOLS/kosoku"
    "$PY3" -m venv "$TOOLS/kosoku"
    "$TOOLS/kosoku/bin/pip" install -q kosoku==0.1.0
  fi
fi
log "done"
