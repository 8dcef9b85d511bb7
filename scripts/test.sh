#!/usr/bin/env bash
# Full test run: install the external test peers (idempotent), then every cargo test target.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
bash scripts/install-test-tools.sh
cargo build --all-targets
cargo test --all-targets --no-fail-fast -- --test-threads="${WRS_TEST_THREADS:-4}"
echo "scripts/test.sh: all tests passed in $(( $(date +%s) - start )) s"
