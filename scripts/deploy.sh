#!/usr/bin/env bash
# Installs kneescreen on a Raspberry Pi over ssh and (re)starts it as a service.
#
#   scripts/deploy.sh [--config board/kneescreen-ili9341.toml] [--target aarch64-unknown-linux-gnu] pi@HOST
#
# Copies the binary (build it first: scripts/build-pi.sh), models/, the systemd unit, the USB
# mount rule and the config; creates the `kneescreen` user; enables and starts the service. The
# ssh user needs sudo. Boot settings (config.txt / cmdline.txt) are left to the technician:
# the script says which snippet from board/boot/ the chosen display needs.
set -euo pipefail
cd "$(dirname "$0")/.."

config=board/kneescreen-ili9341.toml
target=aarch64-unknown-linux-gnu
host=
while [[ $# -gt 0 ]]; do
    case "$1" in
        --config) config=$2; shift 2 ;;
        --target) target=$2; shift 2 ;;
        -h|--help) sed -n '2,10p' "$0"; exit 0 ;;
        -*) echo "deploy.sh: unknown option $1" >&2; exit 2 ;;
        *) host=$1; shift ;;
    esac
done
[[ -n $host ]] || { echo "usage: scripts/deploy.sh [--config FILE] [--target TRIPLE] user@host" >&2; exit 2; }

bin="${CARGO_TARGET_DIR:-target}/$target/release/kneescreen"
[[ -x $bin ]] || { echo "deploy.sh: $bin missing: run scripts/build-pi.sh $target first" >&2; exit 1; }
[[ -f $config ]] || { echo "deploy.sh: no config $config (see board/kneescreen-*.toml)" >&2; exit 1; }

# Which display kind the config asks for decides the drop-in and the boot hint.
kind=$(sed -n '/^\[panel\]/,/^\[/s/^kind *= *"\([a-z]*\)".*/\1/p' "$config" | head -n1)
kind=${kind:-virtual}

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
mkdir -p "$stage/models"
cp "$bin" "$stage/kneescreen"
cp models/card.json models/card.json.sig models/*.onnx "$stage/models/"
cp board/kneescreen.service board/kneescreen-fb.conf board/99-kneescreen-usb.rules "$stage/"
cp "$config" "$stage/kneescreen.toml"
cat > "$stage/install.sh" <<'EOF'
#!/bin/sh
# Runs on the Pi as root, from the folder deploy.sh copied: install.sh PANEL_KIND
set -eu
cd "$(dirname "$0")"
kind=${1:-virtual}

for group in gpio spi video plugdev; do
    getent group "$group" >/dev/null || groupadd --system "$group"
done
id kneescreen >/dev/null 2>&1 || useradd --system --user-group --home-dir /var/lib/kneescreen \
    --shell /usr/sbin/nologin --comment "kneescreen appliance" kneescreen

install -d -m 0755 /opt/kneescreen /opt/kneescreen/models /etc/kneescreen /media/kneescreen-usb
install -m 0755 kneescreen /opt/kneescreen/kneescreen.new
mv /opt/kneescreen/kneescreen.new /opt/kneescreen/kneescreen
rm -f /opt/kneescreen/models/*
install -m 0644 models/* /opt/kneescreen/models/
# Site heads (kneescreen calibrate, or the console) are the device's own: they live in the state
# folder the service may write, survive updates, and are reached from the models folder.
install -d -o kneescreen -g kneescreen -m 0750 /var/lib/kneescreen /var/lib/kneescreen/site-heads
ln -sfn /var/lib/kneescreen/site-heads /opt/kneescreen/models/site-heads
if [ -f /etc/kneescreen/kneescreen.toml ] && ! cmp -s kneescreen.toml /etc/kneescreen/kneescreen.toml; then
    cp /etc/kneescreen/kneescreen.toml "/etc/kneescreen/kneescreen.toml.$(date +%Y%m%d-%H%M%S).bak"
fi
install -m 0644 kneescreen.toml /etc/kneescreen/kneescreen.toml
# Which model variant is fastest differs between a Pi 4, a Pi 5 and a laptop: measure it here and
# set the fastest one that grades as fp32 does (about a minute on a Pi).
echo "== choosing the fastest model variant on this device (kneescreen bench --choose)"
/opt/kneescreen/kneescreen bench --choose --runs 5 --config /etc/kneescreen/kneescreen.toml ||
    echo "bench --choose failed: the model stays as configured"

install -m 0644 kneescreen.service /etc/systemd/system/kneescreen.service
if [ "$kind" = fb ]; then
    install -d /etc/systemd/system/kneescreen.service.d
    install -m 0644 kneescreen-fb.conf /etc/systemd/system/kneescreen.service.d/framebuffer.conf
else
    rm -f /etc/systemd/system/kneescreen.service.d/framebuffer.conf
fi

gid=$(getent group kneescreen | cut -d: -f3)
sed "s/@GID@/$gid/g" 99-kneescreen-usb.rules > /etc/udev/rules.d/99-kneescreen-usb.rules
udevadm control --reload-rules

systemctl daemon-reload
systemctl enable kneescreen.service
systemctl restart kneescreen.service
sleep 3
systemctl --no-pager --lines=15 status kneescreen.service || true
EOF

echo "== copying to $host"
remote_dir=/tmp/kneescreen-deploy
# shellcheck disable=SC2029 # $remote_dir is meant to expand here
ssh "$host" "rm -rf $remote_dir && mkdir -p $remote_dir"
scp -rq "$stage"/. "$host:$remote_dir/"
echo "== installing (sudo) on $host"
# shellcheck disable=SC2029
ssh -t "$host" "sudo sh $remote_dir/install.sh $kind; rm -rf $remote_dir"

case "$kind" in
    spi) echo "Boot settings: board/boot/config-spi-userspace.txt (dtparam=spi=on), then reboot once." ;;
    fb) echo "Boot settings: board/boot/config-hdmi-dsi.txt or config-spi-kernel.txt, and cmdline-hdmi-dsi.txt." ;;
    *) echo "Panel kind '$kind': no display is driven on the Pi; see board/README.md." ;;
esac
echo "Logs: ssh $host journalctl -u kneescreen -f"
