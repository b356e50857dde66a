#!/usr/bin/env bash
# A/B of two berth builds on berthd's hot paths: berthd and berth-shim from
# DIR_A and DIR_B take turns in one systemd box (berthd restarted on each
# turn, its exec server with it), each turn timing N back-to-back
#   exec:      ExecContainer + WaitExec of /bin/true into one running
#              container (examples/dbus_bench.rs --exec-into), or
#   lifecycle: CreateContainer, StartContainer, WaitContainer,
#              DeleteContainer of /bin/true (dbus_bench),
# ROUNDS turns each. Prints each turn's median, then the medians over all
# turns of the whole and of each call.
#   bench/ab.sh exec|lifecycle DIR_A DIR_B [ROUNDS] [N]   (defaults 6, 40)
# A DIR holds berthd, berth-shim and berth-monitor (a copy of
# target/release, say); it takes about a minute. AB_ARGS_A / AB_ARGS_B:
# more dbus_bench flags for one side (AB_ARGS_B=--and-wait: one
# ExecContainerAndWait per exec there, the same build on both sides).
# AB_GAP=SECONDS (exec): each exec by a fresh client after that much idle
# (`sleep`), not back to back — how execs come interleaved with other
# work (probes), and when the exec server makes its spare shims.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" != --inner ]; then
  case "${1:-}" in exec | lifecycle) ;; *) sed -n '2,18p' "$0"; exit 2 ;; esac
  [ $# -ge 3 ] || { sed -n '2,18p' "$0"; exit 2; }
  . scripts/deps
  cargo build --release --quiet -p berth-box
  cargo build --release --quiet -p berthd --example dbus_bench
  A=$(realpath "$2") B=$(realpath "$3")
  exec target/release/berth-box run --bind "$A" --bind "$B" --tmpfs /var/lib/berth-bench -- \
    /bin/bash "$PWD/bench/ab.sh" --inner "$1" "$PWD" "$A" "$B" "${4:-6}" "${5:-40}" \
    "${AB_ARGS_A:-}" "${AB_ARGS_B:-}" "${AB_GAP:-}"
fi
MODE=$2 SRC=$3 A=$4 B=$5 ROUNDS=$6 N=$7 ARGS_A=${8:-} ARGS_B=${9:-} GAP=${10:-}
EX=$SRC/target/release/examples
BUNDLE=/var/lib/berth-bench/bundle
install -m 0644 "$SRC/dbus/system.d/io.berth.Berth1.conf" /etc/dbus-1/system.d/
busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null
cp "$SRC/units/berth.slice" /run/systemd/system/
mkdir -p "$BUNDLE"/rootfs/{bin,proc,sys,dev}
cp /bin/busybox "$BUNDLE/rootfs/bin/"
for applet in true sleep; do ln -sf busybox "$BUNDLE/rootfs/bin/$applet"; done
"$EX/dbus_bench" --bundle "$BUNDLE" --write-spec
if [ "$MODE" = exec ]; then
  python3 -c 'import json, sys
p = sys.argv[1]; c = json.load(open(p)); c["process"]["args"] = ["sleep", "1000000"]
json.dump(c, open(p, "w"))' "$BUNDLE/config.json"
  columns="total ExecContainer WaitExec"
else
  columns="total CreateContainer StartContainer WaitContainer DeleteContainer"
fi
samples=$(mktemp -d)
M="io.berth.Berth1 /io/berth/Berth1 io.berth.Berth1.Manager"
# One turn's runs: "total call…" µs a line into $samples/SIDE.
run() {
  local side=$1 round=$2 more=$ARGS_A
  [ "$side" = b ] && more=$ARGS_B
  if [ "$MODE" = exec ] && [ -n "$GAP" ]; then
    "$EX/dbus_bench" --bundle "$BUNDLE" --exec-into ab --iterations 5 $more >/dev/null
    for _ in $(seq "$N"); do
      sleep "$GAP"
      "$EX/dbus_bench" --bundle "$BUNDLE" --exec-into ab --iterations 1 $more \
        --samples "$samples/$side" >/dev/null
    done
    echo "$side round $round: $N execs after ${GAP} s idle each"
  elif [ "$MODE" = exec ]; then
    "$EX/dbus_bench" --bundle "$BUNDLE" --exec-into ab --iterations 5 $more >/dev/null
    "$EX/dbus_bench" --bundle "$BUNDLE" --exec-into ab --iterations "$N" $more \
      --samples "$samples/$side" | sed "s/^/$side round $round: /"
  else
    "$EX/dbus_bench" --bundle "$BUNDLE" --iterations 5 --prefix "w$round$side" $more >/dev/null
    "$EX/dbus_bench" --bundle "$BUNDLE" --iterations "$N" --prefix "m$round$side" $more \
      --samples "$samples/$side" | grep '^RESULT' | sed "s/^/$side round $round: /"
  fi
}
for round in $(seq "$ROUNDS"); do
  for side in a b; do
    dir=$A; [ $side = b ] && dir=$B
    sed "s|^ExecStart=.*|ExecStart=$dir/berthd|" "$SRC/units/berthd.service" \
      > /run/systemd/system/berthd.service
    systemctl daemon-reload
    systemctl restart berthd
    if [ "$MODE$round$side" = exec1a ]; then
      busctl call $M CreateContainer 'ssa{sv}' ab "$BUNDLE" 0 >/dev/null
      busctl call $M StartContainer s ab
    fi
    run $side "$round"
  done
done
[ "$MODE" = exec ] && busctl call $M DeleteContainer sb ab true
median() { sort -n | awk '{v[NR] = $1} END {printf "%.3f", v[int(NR / 2) + 1] / 1000}'; }
for side in a b; do
  f=$samples/$side line="$side: n=$(wc -l <"$f"), ms:" k=1
  for name in $columns; do
    line+=" $name $(cut -d' ' -f$k "$f" | median)"
    k=$((k + 1))
  done
  echo "$line"
done
