#!/usr/bin/env python3
"""Reads Autobahn index.json files (one per shard); exits 1 when any case's behavior is
FAILED, or when fewer cases ran than cases 1.*-10.* hold (about 300)."""
import json
import sys
from collections import Counter

paths = sys.argv[1:] or ["reports/index.json"]
results = {}
for path in paths:
    try:
        with open(path) as f:
            index = json.load(f)
    except (OSError, ValueError) as e:
        print(f"cannot read {path}: {e}")
        sys.exit(1)
    for agent, cases in index.items():
        for case, res in cases.items():
            results[(agent, case)] = res


def order(key):
    return [int(x) for x in key[1].split(".")]


failed = []
counts = Counter()
close_counts = Counter()
for key in sorted(results, key=order):
    res = results[key]
    b = res.get("behavior", "?")
    bc = res.get("behaviorClose", "?")
    counts[b] += 1
    close_counts[bc] += 1
    if b == "FAILED":
        failed.append(f"{key[0]} {key[1]}: behavior={b} behaviorClose={bc} "
                      f"remoteCloseCode={res.get('remoteCloseCode')} report={res.get('reportfile')}")
total = len(results)
print(f"autobahn: {total} cases; behavior {dict(counts)}; behaviorClose {dict(close_counts)}")
status = 0
if total < 295:
    print(f"only {total} cases ran; cases 1.*-10.* hold 301")
    status = 1
if failed:
    print(f"{len(failed)} FAILED cases:")
    for line in failed:
        print("  " + line)
    status = 1
if status == 0:
    print("autobahn: no FAILED case")
sys.exit(status)
