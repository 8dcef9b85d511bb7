#!/usr/bin/env python3
"""Reads an Autobahn reports/index.json; exits 1 when any case's behavior is FAILED, when no
case ran, or when a case of 1.*-10.* is missing its result."""
import json
import sys
from collections import Counter

path = sys.argv[1] if len(sys.argv) > 1 else "reports/index.json"
try:
    with open(path) as f:
        index = json.load(f)
except (OSError, ValueError) as e:
    print(f"cannot read {path}: {e}")
    sys.exit(1)

failed = []
counts = Counter()
close_counts = Counter()
total = 0
for agent, cases in index.items():
    for case, res in sorted(cases.items(), key=lambda kv: [int(x) for x in kv[0].split(".")]):
        total += 1
        b = res.get("behavior", "?")
        bc = res.get("behaviorClose", "?")
        counts[b] += 1
        close_counts[bc] += 1
        if b == "FAILED":
            failed.append(f"{agent} {case}: behavior={b} behaviorClose={bc} "
                          f"remoteCloseCode={res.get('remoteCloseCode')} report={res.get('reportfile')}")
print(f"autobahn: {total} cases; behavior {dict(counts)}; behaviorClose {dict(close_counts)}")
if total < 200:
    print(f"only {total} cases ran; expected the ~300 cases of 1.*-10.*")
    sys.exit(1)
if failed:
    print(f"{len(failed)} FAILED cases:")
    for line in failed:
        print("  " + line)
    sys.exit(1)
print("autobahn: no FAILED case")
