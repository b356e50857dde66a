#!/usr/bin/env bash
# Two of berth's scale knobs measured in one box, value by value (issue 22;
# docs/performance.md "1000 running"):
#
#   bench/knobs.sh slices "1 16 64" [SCALE]   # BERTH_SLICES: sub-slices of
#       berth.slice; the scale scenario at SCALE (default 1000), berth alone
#   bench/knobs.sh shims "32 64 128 0" [N]    # BERTH_SHIMS_AT_WORK: shims at
#       once (0: no limit); the lifecycle scenario, 16 and 64 clients, N
#       serial samples (default 10), beside `systemd-run --scope` (the floor)
#
# Expects a release build (cargo build --release -p berthd -p berth-shim
# -p berth-monitor -p berth-bench -p berth-box; scripts/static-monitor
# target/release). Each value is a fresh berthd (stopped, the variable set in
# systemd's environment, started by berth-bench); the values take turns
# PASSES times (default 2: a b c a b c), so drift in the host's load hits
# them alike. BIN: the binaries (default target/release). Reports in
# target/bench-knobs/<knob>-<value>-<pass>/report.md.
set -euo pipefail
cd "$(dirname "$0")/.."
knob=${1:?slices or shims}
values=${2:?values}
case "$knob" in
  slices) var=BERTH_SLICES; peers=""; args="--only scale --scale ${3:-1000} --iterations 20" ;;
  shims) var=BERTH_SHIMS_AT_WORK; peers="systemd-run"; args="--only lifecycle --iterations ${3:-10}" ;;
  *) echo "knob: slices or shims" >&2; exit 2 ;;
esac
bin=$(realpath "${BIN:-target/release}")
out=$PWD/target/bench-knobs
mkdir -p "$out"
inner=""
for pass in $(seq "${PASSES:-2}"); do
  for v in $values; do
    dir="$out/$knob-$v-$pass"
    inner+="systemctl stop berthd 2>/dev/null || true; systemctl set-environment $var=$v; \
echo \"== $var=$v pass $pass (load \$(cut -d' ' -f1-3 /proc/loadavg))\"; \
BERTH_BENCH_PEERS='$peers' $bin/berth-bench --src $PWD \
--bin $bin --out $dir $args > $dir.log 2>&1 || echo \"  failed: see $dir.log\"; \
grep -E 'create\\+start|delete|concurrent|lifecycles/s|serial' $dir.log | grep -v '^berth-bench' || true; "
  done
done
exec "$bin/berth-box" run --tmpfs /var/lib/berth-bench -- sh -c "$inner"
