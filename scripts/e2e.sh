#!/usr/bin/env bash
# End-to-end test of the web console in a real browser: starts `kneescreen run` on temporary
# folders with a virtual panel, drives Debian's headless Chromium through it with playwright-core
# (tests/e2e), stops the appliance. Builds nothing: uses $KNEESCREEN_BIN (default
# target/debug/kneescreen). Exits non-zero when a check fails.
#
#   scripts/e2e.sh                     # everything
#   KNEESCREEN_RUN_ARGS="--models-dir models" scripts/e2e.sh
#   E2E_OUT=docs/screenshots scripts/e2e.sh   # keep the screenshots somewhere else
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
bin="${KNEESCREEN_BIN:-target/debug/kneescreen}"
chromium_bin="${CHROMIUM:-/usr/bin/chromium}"

if [[ ! -x "$bin" ]]; then
    echo "e2e: $bin not found: build it first (cargo build) or set KNEESCREEN_BIN" >&2
    exit 2
fi
if [[ ! -x "$chromium_bin" ]]; then
    echo "e2e: installing Debian's chromium" >&2
    if [[ $(id -u) -eq 0 ]]; then sudo=""; else sudo="sudo"; fi
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq chromium >/dev/null
fi
if ! command -v node >/dev/null; then
    echo "e2e: node (>= 18) is needed: apt-get install nodejs npm" >&2
    exit 2
fi

# playwright-core only drives a browser; it never downloads one (no `playwright install`).
(
    cd tests/e2e
    if [[ -f package-lock.json ]]; then
        npm ci --no-audit --no-fund --loglevel=error
    else
        npm install --no-audit --no-fund --loglevel=error
    fi
)

tmp="$(mktemp -d "${TMPDIR:-/tmp}/kneescreen-e2e.XXXXXX")"
server_pid=""
cleanup() {
    if [[ -n "$server_pid" ]] && kill -0 "$server_pid" 2>/dev/null; then
        kill "$server_pid" 2>/dev/null || true
        for _ in $(seq 50); do kill -0 "$server_pid" 2>/dev/null || break; sleep 0.1; done
        kill -9 "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT

port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
url="http://127.0.0.1:$port"
mkdir -p "$tmp/results" "$tmp/inbox" "$tmp/usb"

args=(run --results "$tmp/results" --inbox "$tmp/inbox" --panel virtual --listen "127.0.0.1:$port")
# Keep the appliance away from this machine's real USB mounts when it lets us.
if "$bin" run --help 2>/dev/null | grep -q -- '--usb-parent'; then
    args+=(--usb-parent "$tmp/usb")
fi
# shellcheck disable=SC2206 # word splitting is the point
args+=(${KNEESCREEN_RUN_ARGS:-})

echo "e2e: $bin ${args[*]}"
"$bin" "${args[@]}" >"$tmp/server.log" 2>&1 &
server_pid=$!

# The model loads before the console listens: allow time for a cold start.
for i in $(seq 600); do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "e2e: kneescreen run exited before listening:" >&2
        cat "$tmp/server.log" >&2
        exit 1
    fi
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
        break
    fi
    if [[ $i -eq 600 ]]; then
        echo "e2e: nothing listens on $url after 60 s" >&2
        cat "$tmp/server.log" >&2
        exit 1
    fi
    sleep 0.1
done
echo "e2e: appliance listening on $url"

status=0
KNEESCREEN_URL="$url" CHROMIUM="$chromium_bin" E2E_OUT="${E2E_OUT:-$root/tests/e2e/out}" \
    node --test --test-reporter=spec tests/e2e/console.test.mjs || status=$?

if [[ $status -ne 0 ]]; then
    echo "e2e: FAILED; the appliance said:" >&2
    tail -n 40 "$tmp/server.log" >&2
    exit "$status"
fi
kill "$server_pid" 2>/dev/null || true
wait "$server_pid" 2>/dev/null || true

# The console beyond loopback: TLS with the certificate made on the first start (kept beside the
# results folder), a PIN, and the browser trusting exactly that certificate.
port="$(node -e 'const s=require("net").createServer();s.listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})')"
mkdir -p "$tmp/tls/results" "$tmp/tls/inbox"
cat >"$tmp/tls/kneescreen.toml" <<TOML
inboxes = ["$tmp/tls/inbox"]
results = "$tmp/tls/results"
usb_mount_parent = "$tmp/usb"
[web]
listen = "0.0.0.0:$port"
token = "2468"
TOML
echo "e2e: $bin run --config $tmp/tls/kneescreen.toml (console beyond loopback)"
# shellcheck disable=SC2086 # word splitting is the point
"$bin" run --config "$tmp/tls/kneescreen.toml" --panel virtual ${KNEESCREEN_RUN_ARGS:-} >"$tmp/tls.log" 2>&1 &
server_pid=$!
fingerprint=""
for _ in $(seq 600); do
    fingerprint="$(sed -n 's/.*web console on https:.*fingerprint \([0-9A-F:]*\)).*/\1/p' "$tmp/tls.log")"
    [[ -n "$fingerprint" ]] && break
    if ! kill -0 "$server_pid" 2>/dev/null; then
        echo "e2e: kneescreen run (TLS) exited:" >&2
        cat "$tmp/tls.log" >&2
        exit 1
    fi
    sleep 0.1
done
if [[ -z "$fingerprint" ]]; then
    echo "e2e: no https console after 60 s" >&2
    cat "$tmp/tls.log" >&2
    exit 1
fi
echo "e2e: appliance listening on https://127.0.0.1:$port, certificate SHA-256 $fingerprint"
KNEESCREEN_HTTPS_URL="https://127.0.0.1:$port" KNEESCREEN_CERT="$tmp/tls/console-tls/console-cert.pem" \
    KNEESCREEN_FINGERPRINT="$fingerprint" KNEESCREEN_PIN=2468 CHROMIUM="$chromium_bin" \
    node --test --test-reporter=spec tests/e2e/https.test.mjs || status=$?
if [[ $status -ne 0 ]]; then
    echo "e2e: FAILED (https); the appliance said:" >&2
    tail -n 40 "$tmp/tls.log" >&2
fi
exit "$status"
