#!/usr/bin/env bash
# Creates .venv with the pinned training / export / fixture tooling (Python 3.11).
# Not needed to build, test or run the appliance.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/pip install -q --upgrade pip
.venv/bin/pip install -q -r scripts/requirements.lock
echo "ready: .venv/bin/python"
