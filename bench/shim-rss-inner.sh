#!/usr/bin/env bash
# Runs inside the box (see shim-rss.sh).
set -euo pipefail
BIN=$1 N=$2
B=/var/lib/berth-bench/bundle
mkdir -p $B/rootfs/bin $B/rootfs/proc $B/rootfs/sys $B/rootfs/dev $B/rootfs/etc
cp /bin/busybox $B/rootfs/bin/ && ln -sf busybox $B/rootfs/bin/sleep && ln -sf busybox $B/rootfs/bin/sh
( cd $B && $BIN/berth-runtime spec && sed -i 's/"terminal": true/"terminal": false/; s/"sh"$/"sleep", "100000"/' config.json )

mem() { # pid -> "rss_kb pss_kb"
  echo "$(awk '/^VmRSS/ {print $2}' /proc/$1/status) $(awk '/^Pss:/ {print $2}' /proc/$1/smaps_rollup)"
}
median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "starting $N berth containers (berth-shim → berth-monitor)…"
for i in $(seq "$N"); do
  $BIN/berth-shim --root /run/berth --id b$i --bundle $B --systemd-cgroup --shim-scope >/dev/null
  cat /run/berth/b$i/exec.fifo >/dev/null   # start
done
sleep 1
: > /tmp/berth.mem
for p in $(pgrep -x berth-monitor); do mem $p >> /tmp/berth.mem; done

echo "starting $N podman containers (conmon + runc, systemd cgroups; crun dies on RLIMIT_MEMLOCK here)…"
P="podman --runtime runc --storage-driver vfs --root /var/lib/containers/storage --runroot /run/containers --cgroup-manager systemd"
for i in $(seq "$N"); do
  $P run -d --rm --network none --pids-limit -1 --rootfs $B/rootfs sleep 100000 >/dev/null
done
sleep 1
: > /tmp/conmon.mem
for p in $(pgrep -x conmon); do mem $p >> /tmp/conmon.mem; done

br=$(cut -d' ' -f1 /tmp/berth.mem | median); bp=$(cut -d' ' -f2 /tmp/berth.mem | median)
cr=$(cut -d' ' -f1 /tmp/conmon.mem | median); cp=$(cut -d' ' -f2 /tmp/conmon.mem | median)
printf '%-14s %6s %12s %12s\n' monitor count "VmRSS (KiB)" "Pss (KiB)"
printf '%-14s %6s %12s %12s\n' berth-monitor "$(wc -l < /tmp/berth.mem)" "$br" "$bp"
printf '%-14s %6s %12s %12s\n' conmon "$(wc -l < /tmp/conmon.mem)" "$cr" "$cp"
printf 'ratio berth/conmon: VmRSS %.2f, Pss %.2f   (goal: VmRSS <= 1024 KiB)\n' \
  "$(echo "$br/$cr" | bc -l)" "$(echo "$bp/$cp" | bc -l)"
