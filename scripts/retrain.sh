#!/usr/bin/env bash
# Retrains the shipped model from scratch (seeded) and exports it into models/.
#   scripts/retrain.sh [RECIPE] [RUN_DIR]      default: improved runs/improved
# Logs to RUN_DIR/train.log and RUN_DIR/export.log; plots RUN_DIR/curves.png and confusion_val.png.
# Takes about an hour on 2 CPU cores. Never run in CI.
set -euo pipefail
cd "$(dirname "$0")/.."
recipe=${1:-improved}
run=${2:-runs/$recipe}
[ -x .venv/bin/python ] || scripts/setup-venv.sh
mkdir -p "$run"
.venv/bin/python scripts/train.py --recipe "$recipe" --out "$run" --seed 42
.venv/bin/python scripts/export.py --run "$run" --out models 2>&1 | tee "$run/export.log"
