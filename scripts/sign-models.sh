#!/usr/bin/env bash
# Signs a models folder for release: its card.json (which names every model file by SHA-256)
# gets card.json.sig, an Ed25519 signature with the project's release key. The appliance loads
# only a card signed by a key compiled into it (src/pipeline/signature.rs).
#
#   scripts/sign-models.sh KEY [MODELS_DIR]      # default MODELS_DIR: models
#
# KEY is the release key's private half (PKCS#8), kept outside the repository, readable by the
# release manager only. Sign after every change to the card (scripts/export.py,
# scripts/operating_point.py). A new key (`kneescreen sign-models --new-key --key FILE DIR`)
# prints its verifying key, which must replace PROJECT_KEY in src/pipeline/signature.rs before
# the next build. The tests sign their own copies with tests/fixtures/test-signing-key.pk8, which
# only debug builds trust.
set -euo pipefail
cd "$(dirname "$0")/.."
key="${1:?usage: scripts/sign-models.sh KEY [MODELS_DIR]}"
dir="${2:-models}"
bin="${KNEESCREEN_BIN:-target/debug/kneescreen}"
[[ -x "$bin" ]] || cargo build -q
"$bin" sign-models --key "$key" "$dir"
