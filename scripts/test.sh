#!/usr/bin/env bash
# The test command: everything that runs on a laptop (the x86 build). No network, no data set
# needed; tests that can use ../shared/data/kneeKL224 say so and skip when it is absent.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test -j 2 "$@"
