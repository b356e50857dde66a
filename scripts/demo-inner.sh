#!/usr/bin/env bash
# Runs inside berth's systemd box (see scripts/demo): installs berthd as a
# systemd service from the build tree and runs a real container through it,
# over D-Bus, with nothing but busctl.
set -euo pipefail
SRC=$1 BIN=$2
say() { printf '\n== %s\n' "$*"; }

say "systemd in the box: PID 1 is $(cat /proc/1/comm), state $(systemctl is-system-running)"
install -m 0644 "$SRC/dbus/system.d/io.berth.Berth1.conf" /etc/dbus-1/system.d/
busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig
sed "s|^ExecStart=.*|ExecStart=$BIN/berthd|" "$SRC/units/berthd.service" > /run/systemd/system/berthd.service
cp "$SRC/units/berth.slice" /run/systemd/system/
systemctl daemon-reload
systemctl start berthd
say "berthd: $(systemctl show -P StatusText berthd)"

say "a busybox bundle"
B=/var/lib/berth/demo-bundle
mkdir -p $B/rootfs/bin $B/rootfs/proc $B/rootfs/sys $B/rootfs/dev
cp /bin/busybox $B/rootfs/bin/ && for a in sh echo hostname cat; do ln -sf busybox $B/rootfs/bin/$a; done
( cd $B && "$BIN/berth-runtime" spec )
sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sh", "-c", "echo hello from $(hostname), pid $$; exit 7"/' $B/config.json

M="io.berth.Berth1 /io/berth/Berth1 io.berth.Berth1.Manager"
say "busctl call $M CreateContainer ssa{sv} demo $B 0"
busctl call $M CreateContainer 'ssa{sv}' demo $B 0
busctl get-property io.berth.Berth1 /io/berth/Berth1/container/demo io.berth.Berth1.Container Status Unit Pid
say "StartContainer, WaitContainer"
busctl call $M StartContainer s demo
busctl call $M WaitContainer s demo
say "its output, from the journal (CONTAINER_NAME=demo)"
journalctl --sync; journalctl -o short-monotonic --no-hostname CONTAINER_NAME=demo | tail -n 3
say "DeleteContainer"
busctl call $M DeleteContainer sb demo false
busctl call $M ListContainers
