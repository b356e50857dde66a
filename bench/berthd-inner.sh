#!/usr/bin/env bash
# Runs inside the box (see berthd.sh): starts berthd as a systemd service the
# way tests/berthd.rs does, then times one container lifecycle of a busybox
# bundle running `true` through berthd (D-Bus), `runc --systemd-cgroup run`
# and `systemd-run --scope --quiet true` (and the same with
# -p DefaultDependencies=no), serial (alternating tool by tool) and 16 in
# parallel (in rounds), then berthd's VmRSS idle and after the runs.
set -euo pipefail
SRC=$1 BIN=$2 N=$3
P=16                                  # parallel workers
R=$(( N < 3 ? N : 3 ))                # rounds: tools alternate between them
CLIENT=$BIN/examples/dbus_bench
D=/var/lib/berth-bench
B=$D/bundle
S=$D/samples && mkdir -p $S

install -m 0644 "$SRC/dbus/system.d/io.berth.Berth1.conf" /etc/dbus-1/system.d/
busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null
sed "s|^ExecStart=.*|ExecStart=$BIN/berthd|" "$SRC/units/berthd.service" > /run/systemd/system/berthd.service
cp "$SRC/units/berth.slice" /run/systemd/system/
systemctl daemon-reload
systemctl start berthd

# The bundle of bench/runtime-inner.sh: busybox, berth's default spec, `true`.
mkdir -p $B/rootfs/bin $B/rootfs/proc $B/rootfs/sys $B/rootfs/dev
cp /bin/busybox $B/rootfs/bin/ && ln -sf busybox $B/rootfs/bin/true
$CLIENT --bundle $B --write-spec
grep -q '"true"' $B/config.json

echo "host: $(nproc) CPUs, load average before the runs $(cut -d' ' -f1-3 /proc/loadavg) (other work on the host skews the figures)"
MAINPID=$(systemctl show -P MainPID berthd)
kb() { awk -v k="$1:" '$1 == k {print $2}' /proc/$MAINPID/status; }
sleep 1
RSS_IDLE=$(kb VmRSS)
echo "berthd: pid $MAINPID, VmRSS idle after start: $RSS_IDLE KiB"

runc_one()   { runc --root /run/rb --systemd-cgroup run --bundle $B "$1"; }
sdrun_one()  { systemd-run --scope --quiet true; }
sdrunnd_one() { systemd-run --scope --quiet -p DefaultDependencies=no true; }
# peer TOOL FILE COUNT ID: COUNT timed runs of TOOL_one, µs appended to FILE.
peer() {
  local t0 t1 i
  for ((i = 0; i < $3; i++)); do
    t0=${EPOCHREALTIME/./}            # µs, no fork
    "$1_one" "$4-$i" </dev/null >/dev/null 2>&1 || { echo "$1 failed:" >&2; "$1_one" "$4-x$i"; exit 1; }
    t1=${EPOCHREALTIME/./}
    echo $((t1 - t0)) >> "$2"
  done
}
# par TOOL COUNT ID: P workers of COUNT runs each; wall µs added to S/TOOL.par.wall.
par() {
  local t0 w pids=()
  t0=${EPOCHREALTIME/./}
  if [ "$1" = berth ]; then
    $CLIENT --bundle $B --iterations "$2" --workers $P --prefix "$3" --samples $S/berth.par \
      | sed 's/^/    /'
  else
    for ((w = 0; w < P; w++)); do
      peer "$1" $S/"$1".par "$2" "$3-$w" & pids+=($!)
    done
    for w in "${pids[@]}"; do wait "$w"; done
  fi
  echo $(( ${EPOCHREALTIME/./} - t0 )) >> $S/"$1".par.wall
}
chunk() { echo $(( $1 * ($2 + 1) / R - $1 * $2 / R )); } # total round -> this round's share

# Warm-up, not counted: page cache, systemd's unit load paths, the bus.
$CLIENT --bundle $B --iterations 2 --prefix warm >/dev/null
peer runc /dev/null 2 warm; peer sdrun /dev/null 2 warm; peer sdrunnd /dev/null 2 warm

TOOLS=(berth runc sdrun sdrunnd)
# Serial: one lifecycle of each tool in turn, N times, the order rotating (a
# cgroup migration right after another one is cheaper). berthd's go through
# the client as a coprocess: one connection, each lifecycle timed inside it.
coproc CL { exec "$CLIENT" --bundle $B --serve; }
berth_one() {
  echo "$1" >&"${CL[1]}"
  local line
  read -r line <&"${CL[0]}" || { echo "dbus_bench failed" >&2; exit 1; }
  echo "$line" >> "$2"
}
echo "serial: $N x one lifecycle per tool, interleaved"
for ((i = 0; i < N; i++)); do
  for ((k = 0; k < ${#TOOLS[@]}; k++)); do
    t=${TOOLS[(i + k) % ${#TOOLS[@]}]}
    case $t in
      berth) berth_one s-$i $S/berth.ser ;;
      *) peer $t $S/$t.ser 1 s$i ;;
    esac
  done
done
fd=${CL[1]} && exec {fd}>&- && { wait "$CL_PID" || true; }
for ((r = 0; r < R; r++)); do
  n=$(chunk "$N" $r)
  echo "parallel, round $((r + 1))/$R: $P workers x $n lifecycles, one tool after the other"
  for ((k = 0; k < ${#TOOLS[@]}; k++)); do par "${TOOLS[(r + k) % ${#TOOLS[@]}]}" "$n" p$r; done
done
RSS_AFTER=$(kb VmRSS) HWM=$(kb VmHWM)
sleep 2
RSS_SETTLED=$(kb VmRSS)
left=$(systemctl list-units --all --no-legend --plain 'berth-*.scope' 'runc-*.scope')
[ -z "$left" ] || echo "warning: scopes left over: $left" >&2

# stats FILE [COLUMN]: "median p90 p99 count" (nearest rank, µs).
stats() {
  awk -v c="${2:-1}" '{print $c}' "$1" | sort -n | awk '{a[NR] = $1}
    function r(p) { i = int(p * NR); if (i < p * NR) i++; return a[i < 1 ? 1 : i] }
    END {print r(0.5), r(0.9), r(0.99), NR}'
}
ms() { awk -v u="$1" 'BEGIN {printf "%.1f", u / 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
declare -A NAME=([berth]="berthd (D-Bus)" [runc]="runc --systemd-cgroup run"
  [sdrun]="systemd-run --scope" [sdrunnd]="  -p DefaultDependencies=no")
declare -A MED PMED TPUT

echo
echo "berthd per call, serial median / $P parallel median (ms):"
for k in 2 3 4 5; do
  name=$(echo create start wait delete | cut -d' ' -f$((k - 1)))
  read -r s _ <<<"$(stats $S/berth.ser $k)"; read -r p _ <<<"$(stats $S/berth.par $k)"
  printf '  %-8s %7s / %7s\n' "$name" "$(ms "$s")" "$(ms "$p")"
done

echo
echo "one lifecycle of /bin/true: $N serial (interleaved), $P workers x $N in parallel ($R rounds)"
printf '%-28s %8s %8s %8s | %8s %8s %8s %9s\n' "" "serial" "" "" "parallel" "" "" ""
printf '%-28s %8s %8s %8s | %8s %8s %8s %9s\n' "tool" "med ms" "p90" "p99" "med ms" "p90" "p99" "per s"
for t in "${TOOLS[@]}"; do
  read -r smed s90 s99 _ <<<"$(stats $S/$t.ser)"
  read -r pmed p90 p99 pn <<<"$(stats $S/$t.par)"
  wall=$(awk '{s += $1} END {print s}' $S/$t.par.wall)
  MED[$t]=$smed PMED[$t]=$pmed TPUT[$t]=$(awk -v n="$pn" -v w="$wall" 'BEGIN {printf "%.1f", n / (w / 1e6)}')
  printf '%-28s %8s %8s %8s | %8s %8s %8s %9s\n' "${NAME[$t]}" "$(ms "$smed")" "$(ms "$s90")" \
    "$(ms "$s99")" "$(ms "$pmed")" "$(ms "$p90")" "$(ms "$p99")" "${TPUT[$t]}"
done
echo
verdict() { awk -v v="$1" -v g="$2" 'BEGIN {print (v <= g ? "met" : "NOT met")}'; }
rs=$(ratio "${MED[berth]}" "${MED[runc]}") rp=$(ratio "${PMED[berth]}" "${PMED[runc]}")
printf 'ratio berth/runc         median serial %s, parallel %s (goal <= 0.5: %s, %s); throughput %s (higher is better)\n' \
  "$rs" "$rp" "$(verdict "$rs" 0.5)" "$(verdict "$rp" 0.5)" "$(ratio "${TPUT[berth]}" "${TPUT[runc]}")"
printf 'ratio berth/systemd-run  median serial %s, parallel %s; throughput %s\n' \
  "$(ratio "${MED[berth]}" "${MED[sdrun]}")" "$(ratio "${PMED[berth]}" "${PMED[sdrun]}")" \
  "$(ratio "${TPUT[berth]}" "${TPUT[sdrun]}")"
printf 'berthd VmRSS: idle after start %s KiB = %.2f MiB (goal <= 12 MiB: %s); after the runs %s KiB, 2 s later %s KiB, peak (VmHWM) %s KiB\n' \
  "$RSS_IDLE" "$(awk -v k="$RSS_IDLE" 'BEGIN {print k / 1024}')" "$(verdict "$RSS_IDLE" 12288)" \
  "$RSS_AFTER" "$RSS_SETTLED" "$HWM"
echo "$SECONDS s in the box"
