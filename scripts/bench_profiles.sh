#!/usr/bin/env bash
# Paired, interleaved timing of two builds of kneescreen (e.g. the release profile against the
# former size-first one): each round runs `bench --threads 1` on both, alternating which goes
# first, and prints each round's per-pass medians and their ratio. The machine is noisy: compare
# within a round, never across runs.
#   cargo build --release && cargo build --profile release-size
#   scripts/bench_profiles.sh target/release/kneescreen target/release-size/kneescreen [ROUNDS]
set -euo pipefail
a=${1:?first binary}
b=${2:?second binary}
rounds=${3:-3}
pass() { "$1" bench --json --runs 15 --threads 1 | python3 -c '
import json, sys
r = json.load(sys.stdin)
print(" ".join("%s=%.2f" % (m["name"], m["pass_ms"]) for m in r["models"]))'; }
for round in $(seq "$rounds"); do
    if (( round % 2 )); then first=$a; second=$b; else first=$b; second=$a; fi
    ra=""; rb=""
    for bin in "$first" "$second"; do
        out=$(pass "$bin")
        if [[ $bin == "$a" ]]; then ra=$out; else rb=$out; fi
    done
    echo "round $round  A: $ra  B: $rb"
    python3 - "$ra" "$rb" <<'PY'
import sys
a = dict(kv.split("=") for kv in sys.argv[1].split())
b = dict(kv.split("=") for kv in sys.argv[2].split())
print("         A/B per pass: " + "  ".join(f"{k} {float(a[k]) / float(b[k]):.2f}" for k in a))
PY
done
