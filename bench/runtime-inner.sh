#!/usr/bin/env bash
# Runs inside the box (see runtime.sh).
set -euo pipefail
BERTH=$1 N=$2
B=/var/lib/berth-bench/bundle
mkdir -p $B/rootfs/bin $B/rootfs/proc $B/rootfs/sys $B/rootfs/dev
cp /bin/busybox $B/rootfs/bin/ && ln -sf busybox $B/rootfs/bin/true
( cd $B && $BERTH spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"true"/' config.json )
grep -q '"true"' $B/config.json

now() { date +%s%N; }
declare -A T
run_one() { # name command...
  local name=$1; shift
  local t0; t0=$(now)
  "$@" >/dev/null 2>&1 || { echo "$name failed: $*" >&2; "$@"; exit 1; }
  T[$name]+="$(( ($(now) - t0) / 1000 )) "
}
for i in $(seq "$N"); do
  run_one berth           $BERTH --root /run/bb --systemd-cgroup run --bundle $B b$i
  run_one berth-cgroupfs  $BERTH --root /run/bb run --bundle $B c$i
  run_one runc-systemd    runc --root /run/rb --systemd-cgroup run --bundle $B r$i
  run_one runc-cgroupfs   runc --root /run/rb run --bundle $B s$i
done

stats() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {printf "%d %d", a[int((NR+1)/2)], a[int(NR*0.9+0.5)]}'; }
printf '%-16s %10s %10s\n' "runtime" "median ms" "p90 ms"
declare -A MED
for k in berth berth-cgroupfs runc-systemd runc-cgroupfs; do
  read -r med p90 <<<"$(echo "${T[$k]}" | stats)"
  MED[$k]=$med
  printf '%-16s %10.1f %10.1f\n' "$k" "$(echo "$med/1000" | bc -l)" "$(echo "$p90/1000" | bc -l)"
done
printf 'ratio berth(systemd)/runc(systemd)   = %.2f  (goal <= 0.5)\n' "$(echo "${MED[berth]}/${MED[runc-systemd]}" | bc -l)"
printf 'ratio berth(cgroupfs)/runc(cgroupfs) = %.2f\n' "$(echo "${MED[berth-cgroupfs]}/${MED[runc-cgroupfs]}" | bc -l)"
