#!/usr/bin/env bash
# Cross-builds the kneescreen release binary for the Raspberry Pi: aarch64 (64-bit Pi OS, Pi 3/4/5,
# Zero 2 W) and armv7 (32-bit Pi OS), stripped, and prints their sizes.
#
#   scripts/build-pi.sh                      # both targets
#   scripts/build-pi.sh aarch64-unknown-linux-gnu
#
# Needs rustup and Debian's cross compilers (installed here when missing and running as root):
#   gcc-aarch64-linux-gnu, gcc-arm-linux-gnueabihf. The linkers are set in .cargo/config.toml.
# The binaries need glibc ≥ 2.35: Raspberry Pi OS Bookworm or newer.
set -euo pipefail
cd "$(dirname "$0")/.."

targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)

# The size the appliance is allowed for the aarch64 binary: 25 MB (speed matters more than megabytes on a Pi).
max_aarch64_bytes=$((25 * 1000 * 1000))

cross_prefix() {
    case "$1" in
        aarch64-unknown-linux-gnu) echo aarch64-linux-gnu ;;
        armv7-unknown-linux-gnueabihf) echo arm-linux-gnueabihf ;;
        *) echo "build-pi.sh: unsupported target $1 (aarch64-unknown-linux-gnu or armv7-unknown-linux-gnueabihf)" >&2; exit 2 ;;
    esac
}

target_dir=${CARGO_TARGET_DIR:-target}
status=0
for target in "${targets[@]}"; do
    prefix=$(cross_prefix "$target")
    if ! rustup target list --installed | grep -qx "$target"; then
        rustup target add "$target"
    fi
    if ! command -v "$prefix-gcc" >/dev/null; then
        if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
            apt-get install -y "gcc-$prefix"
        else
            echo "build-pi.sh: $prefix-gcc not found: sudo apt-get install gcc-$prefix" >&2
            exit 1
        fi
    fi
    echo "== $target"
    cargo build --release --locked --target "$target"
    bin="$target_dir/$target/release/kneescreen"
    # The release profile strips already; the cross strip also drops what rustc's strip keeps.
    "$prefix-strip" --strip-all "$bin"
    bytes=$(stat -c %s "$bin")
    awk -v f="$bin" -v b="$bytes" 'BEGIN { printf "%s: %d bytes (%.1f MB)\n", f, b, b / 1e6 }'
    if [[ $target == aarch64-* && $bytes -gt $max_aarch64_bytes ]]; then
        echo "build-pi.sh: the aarch64 binary is over the 25 MB budget" >&2
        status=1
    fi
done
exit $status
