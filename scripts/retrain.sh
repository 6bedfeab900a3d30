#!/usr/bin/env bash
# Retrains the shipped model from scratch (seeded) and exports it into models/: recipe `improved`
# from ImageNet (seed 42), exported to RUNS/improved/models, then `robust_continued` from that
# network's fp32 file (seed 43; the selection slice stays seed 42's), exported to models/.
#   scripts/retrain.sh [RUNS]      default: runs
# Logs to RUNS/<recipe>/train.log and export.log; plots curves.png and confusion_val.png there.
# Takes about an hour and a half on 2 CPU cores. Never run in CI. Ends with the int8 variant for
# ARM (scripts/export_int8_arm.py, about 10 min). Then the OA call's ROC points:
# sign the card with tests/fixtures/test-signing-key.pk8 (a debug build trusts it), run
# `scripts/operating_point.py --bin target/debug/kneescreen`, and sign the card for release
# (scripts/sign-models.sh RELEASE_KEY).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-runs}
[ -x .venv/bin/python ] || scripts/setup-venv.sh
mkdir -p "$runs/improved/models" "$runs/robust_continued"
.venv/bin/python scripts/train.py --recipe improved --out "$runs/improved" --seed 42
.venv/bin/python scripts/export.py --run "$runs/improved" --out "$runs/improved/models" 2>&1 | tee "$runs/improved/export.log"
.venv/bin/python scripts/train.py --recipe robust_continued --out "$runs/robust_continued" --seed 43 \
    --split-seed 42 --shipped "$runs/improved/models/kneekl-mnv2.fp32.onnx"
.venv/bin/python scripts/export.py --run "$runs/robust_continued" --out models 2>&1 | tee "$runs/robust_continued/export.log"
.venv/bin/python scripts/export_int8_arm.py --models models 2>&1 | tee "$runs/robust_continued/export_int8_arm.log"
