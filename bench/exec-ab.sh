#!/usr/bin/env bash
# A/B of the exec path of two berth builds: berthd and berth-shim from
# DIR_A and DIR_B take turns (berthd restarted on each turn, its exec
# server with it), each turn timing N back-to-back ExecContainer + WaitExec
# of /bin/true into one running container (examples/dbus_bench.rs
# --exec-into), ROUNDS turns each, in one systemd box. Prints each turn's
# median, then the median over all turns: total, ExecContainer, WaitExec.
#   bench/exec-ab.sh DIR_A DIR_B [ROUNDS] [N]     (defaults 6 and 40)
# A DIR holds berthd, berth-shim and berth-monitor (a copy of
# target/release, say); it takes about a minute.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != --inner ]; then
  [ $# -ge 2 ] || { sed -n '2,10p' "$0"; exit 2; }
  . scripts/deps
  cargo build --release --quiet -p berth-box
  cargo build --release --quiet -p berthd --example dbus_bench
  A=$(realpath "$1") B=$(realpath "$2")
  exec target/release/berth-box run --bind "$A" --bind "$B" --tmpfs /var/lib/berth-bench -- \
    /bin/bash "$PWD/bench/exec-ab.sh" --inner "$PWD" "$A" "$B" "${3:-6}" "${4:-40}"
fi
SRC=$2 A=$3 B=$4 ROUNDS=$5 N=$6
EX=$SRC/target/release/examples
BUNDLE=/var/lib/berth-bench/bundle
install -m 0644 "$SRC/dbus/system.d/io.berth.Berth1.conf" /etc/dbus-1/system.d/
busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null
cp "$SRC/units/berth.slice" /run/systemd/system/
mkdir -p "$BUNDLE"/rootfs/{bin,proc,sys,dev}
cp /bin/busybox "$BUNDLE/rootfs/bin/"
for applet in true sleep; do ln -sf busybox "$BUNDLE/rootfs/bin/$applet"; done
"$EX/dbus_bench" --bundle "$BUNDLE" --write-spec
python3 -c 'import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["process"]["args"] = ["sleep", "1000000"]
json.dump(c, open(p, "w"))' "$BUNDLE/config.json"
samples=$(mktemp -d)
M="io.berth.Berth1 /io/berth/Berth1 io.berth.Berth1.Manager"
for round in $(seq "$ROUNDS"); do
  for side in a b; do
    dir=$A; [ $side = b ] && dir=$B
    sed "s|^ExecStart=.*|ExecStart=$dir/berthd|" "$SRC/units/berthd.service" \
      > /run/systemd/system/berthd.service
    systemctl daemon-reload
    systemctl restart berthd
    if [ "$round$side" = 1a ]; then
      busctl call $M CreateContainer 'ssa{sv}' ab "$BUNDLE" 0 >/dev/null
      busctl call $M StartContainer s ab
    fi
    "$EX/dbus_bench" --bundle "$BUNDLE" --exec-into ab --iterations 5 >/dev/null
    "$EX/dbus_bench" --bundle "$BUNDLE" --exec-into ab --iterations "$N" \
      --samples "$samples/$side" | sed "s/^/$side round $round: /"
  done
done
busctl call $M DeleteContainer sb ab true
median() { sort -n | awk '{v[NR] = $1} END {printf "%.3f", v[int(NR / 2) + 1] / 1000}'; }
for side in a b; do
  f=$samples/$side
  echo "$side: n=$(wc -l <"$f") total $(cut -d' ' -f1 "$f" | median) ms," \
    "ExecContainer $(cut -d' ' -f2 "$f" | median), WaitExec $(cut -d' ' -f3 "$f" | median)"
done
