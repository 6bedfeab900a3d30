#!/usr/bin/env bash
# Peak memory while `kneescreen run` grades a batch of synthetic X-rays, then its CPU use while
# idle (event-driven: it should be about zero). Not run in CI (timings need a quiet machine).
#   cargo build --release && scripts/measure_appliance.sh [BIN] [IDLE_SECONDS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-target/release/kneescreen}
idle=${2:-30}
tmp=$(mktemp -d)
pid=""
trap '[ -n "$pid" ] && kill "$pid" 2>/dev/null; rm -rf "$tmp"' EXIT
mkdir -p "$tmp/in" "$tmp/usb"
# 40 distinct grey PNGs (the journal grades identical bytes once), 300 to 2250 px wide.
python3 - "$tmp/in" <<'PY'
import random, struct, sys, zlib
def png(path, w, h, seed):
    rnd = random.Random(seed)
    row = bytes(rnd.randrange(40, 220) for _ in range(w))
    raw = b"".join(b"\0" + row[y % w:] + row[:y % w] for y in range(h))
    chunk = lambda t, d: struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d))
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))
for i in range(40):
    n = 300 + i * 50
    png(f"{sys.argv[1]}/knee{i}.png", n, n * 4 // 5, i)
PY
"$bin" run --inbox "$tmp/in" --results "$tmp/results" --usb-parent "$tmp/usb" --listen 127.0.0.1:0 \
    </dev/null >"$tmp/log" 2>&1 &
pid=$!
for _ in $(seq 600); do
    [ "$(ls "$tmp/results"/*.json 2>/dev/null | wc -l)" -ge 40 ] && break
    sleep 0.2
done
echo "records: $(ls "$tmp/results"/*.json | wc -l) of 40"
grep VmHWM "/proc/$pid/status" | sed 's/VmHWM:/peak RSS while grading:/'
ticks() { awk '{print $14 + $15}' "/proc/$pid/stat"; }
t1=$(ticks); sleep "$idle"; t2=$(ticks)
echo "CPU while idle: $(( (t2 - t1) * 1000 / $(getconf CLK_TCK) )) ms in ${idle} s"
