#!/usr/bin/env bash
# Runs inside the box (see images.sh): starts berthd as a systemd service the
# way tests/berthctl_images.rs does, builds two docker-save archives (no
# network: busybox-static and pseudo-random data from openssl with fixed
# seeds, tars with fixed names, owners and mtimes), then times
#  1. import + unpack of the ~100 MB one, N times per tool, the order rotating:
#     berthctl image import · skopeo copy docker-archive: oci: + umoci unpack
#     · podman load; each followed (untimed in the import figure, timed apart)
#     by its removal: berthctl image rm + image prune · rm -rf · podman rmi;
#  2. 5N runs of `true` per tool on the busybox image, the order rotating:
#     berthctl run --rm IMAGE · podman run --rm IMAGE · and, for reference,
#     berthctl run --rm --bundle (the same container without the image part).
# Everything lives on tmpfs (the box's /var/lib/berth, /var/lib/containers,
# /var/lib/berth-bench): no disk, fsync costs nearly nothing.
set -euo pipefail
SRC=$1 BIN=$2 N=$3
NRUN=$((5 * N))
CTL=$BIN/berthctl
D=/var/lib/berth-bench
S=$D/samples && mkdir -p $S
# podman as root: overlay storage on the box's tmpfs; runc (crun dies on
# RLIMIT_MEMLOCK in the box); systemd cgroups; no pids.max in the box's
# cgroup tree (--pids-limit -1); no CNI (/proc/sys is read-only in the box).
POD=(podman --runtime runc --storage-driver overlay --root /var/lib/containers/storage
  --runroot /run/containers --cgroup-manager systemd)
HAVE_UMOCI=$(command -v umoci >/dev/null && echo 1 || echo 0)

install -m 0644 "$SRC/dbus/system.d/io.berth.Berth1.conf" /etc/dbus-1/system.d/
busctl call org.freedesktop.DBus /org/freedesktop/DBus org.freedesktop.DBus ReloadConfig >/dev/null
sed "s|^ExecStart=.*|ExecStart=$BIN/berthd|" "$SRC/units/berthd.service" > /run/systemd/system/berthd.service
cp "$SRC/units/berth.slice" /run/systemd/system/
systemctl daemon-reload
systemctl start berthd

# --- the images ---------------------------------------------------------------
# rnd SEED BYTES: incompressible, the same bytes for the same seed.
rnd() { head -c "$2" /dev/zero | openssl enc -aes-128-ctr -nosalt -pass "pass:$1" -pbkdf2 2>/dev/null; }
# archive OUT TAG DIR...: a docker-save tar, one uncompressed layer per DIR.
archive() {
  local out=$1 tag=$2 w=$D/build/$(basename "$1" .tar) i=0 diffs= layers= d
  shift 2
  rm -rf "$w" && mkdir -p "$w"
  for d in "$@"; do
    tar -C "$d" --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -cf "$w/layer$i.tar" .
    diffs+="${diffs:+,}\"sha256:$(sha256sum "$w/layer$i.tar" | cut -d' ' -f1)\""
    layers+="${layers:+,}\"layer$i.tar\""
    i=$((i + 1))
  done
  printf '{"architecture":"amd64","os":"linux","created":"2023-11-14T22:13:20Z","config":{"Env":["PATH=/bin"],"Cmd":["sh"]},"rootfs":{"type":"layers","diff_ids":[%s]}}' \
    "$diffs" > "$w/config.json"
  local cfg; cfg=$(sha256sum "$w/config.json" | cut -d' ' -f1)
  mv "$w/config.json" "$w/$cfg.json"
  printf '[{"Config":"%s.json","RepoTags":["%s"],"Layers":[%s]}]' "$cfg" "$tag" "$layers" > "$w/manifest.json"
  (cd "$w" && tar --sort=name --mtime=@1700000000 --owner=0 --group=0 --numeric-owner -cf "$out" manifest.json "$cfg.json" layer*.tar)
  rm -rf "$w"
}
L=$D/layers
rm -rf $L && mkdir -p $L/base/bin $L/base/etc $L/base/tmp
cp /bin/busybox $L/base/bin/
for t in sh true echo cat ls env sleep; do ln -s busybox $L/base/bin/$t; done
printf 'root:x:0:0:root:/root:/bin/sh\n' > $L/base/etc/passwd
printf 'root:x:0:\n' > $L/base/etc/group
# Four data layers of 24 MiB: 4 files of 5 MiB and 256 of 16 KiB each.
for n in 1 2 3 4; do
  mkdir -p $L/d$n/data/l$n/small
  for f in 0 1 2 3; do rnd "l$n-big$f" $((5 << 20)) > $L/d$n/data/l$n/big$f; done
  rnd "l$n-small" $((256 << 14)) | split -b 16384 -a 3 -d - $L/d$n/data/l$n/small/f
done
archive $D/big.tar bench/big:1 $L/base $L/d1 $L/d2 $L/d3 $L/d4
archive $D/bb.tar bench/bb:1 $L/base
rm -rf $L
BIG_MB=$(stat -c %s $D/big.tar | awk '{printf "%.1f", $1 / 1e6}')
echo "host: $(nproc) CPUs, load average before the runs $(cut -d' ' -f1-3 /proc/loadavg) (other work on the host skews the figures)"
echo "big image: $D/big.tar, $BIG_MB MB, 5 layers (busybox + 4 x 24 MiB: 4 x 5 MiB + 256 x 16 KiB files), sha256 $(sha256sum $D/big.tar | cut -c1-12)…"
echo "tools: $(podman --version) (runc $(runc --version | awk 'NR == 1 {print $3}'), overlay), $(skopeo --version)$([ "$HAVE_UMOCI" = 1 ] && echo ", $(umoci --version)")"

# --- helpers ------------------------------------------------------------------
us() { echo "${EPOCHREALTIME/./}"; }   # µs, no fork
# quiet CMD...: runs CMD, its output only if it fails (then the bench stops).
quiet() {
  local out
  out=$("$@" 2>&1 </dev/null) || { echo "failed: $*" >&2; echo "$out" >&2; exit 1; }
}
# stats FILE [COLUMN]: "median p90 count" (nearest rank, µs).
stats() {
  awk -v c="${2:-1}" '{print $c}' "$1" | sort -n | awk '{a[NR] = $1}
    function r(p) { i = int(p * NR); if (i < p * NR) i++; return a[i < 1 ? 1 : i] }
    END {print r(0.5), r(0.9), NR}'
}
ms() { awk -v u="$1" 'BEGIN {printf "%.1f", u / 1000}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", a / b}'; }
verdict() { awk -v v="$1" -v g="$2" 'BEGIN {print (v <= g ? "met" : "NOT met")}'; }

# --- 1. import + unpack -------------------------------------------------------
# TOOL_imp FILE: one import, µs appended to FILE (several columns: total, parts);
# TOOL_del FILE: its removal, µs appended to FILE.
berth_imp() {
  local t0 t1; t0=$(us)
  quiet $CTL image import $D/big.tar
  t1=$(us); echo $((t1 - t0)) >> "$1"
}
berth_del() {
  local t0 t1; t0=$(us)
  quiet $CTL image rm bench/big:1
  quiet $CTL image prune
  t1=$(us); echo $((t1 - t0)) >> "$1"
}
umoci_imp() {
  local t0 t1 t2; t0=$(us)
  quiet skopeo --insecure-policy copy --quiet docker-archive:$D/big.tar oci:$D/oci:big
  t1=$(us)
  quiet umoci unpack --image $D/oci:big $D/bundle-big
  t2=$(us); echo "$((t2 - t0)) $((t1 - t0)) $((t2 - t1))" >> "$1"
}
umoci_del() {
  local t0 t1; t0=$(us)
  rm -rf $D/oci $D/bundle-big
  t1=$(us); echo $((t1 - t0)) >> "$1"
}
podman_imp() {
  local t0 t1; t0=$(us)
  quiet "${POD[@]}" load -q -i $D/big.tar
  t1=$(us); echo $((t1 - t0)) >> "$1"
}
podman_del() {
  local t0 t1; t0=$(us)
  quiet "${POD[@]}" rmi localhost/bench/big:1
  t1=$(us); echo $((t1 - t0)) >> "$1"
}
ITOOLS=(berth podman)
[ "$HAVE_UMOCI" = 1 ] && ITOOLS=(berth umoci podman)
for t in "${ITOOLS[@]}"; do "${t}_imp" /dev/null; "${t}_del" /dev/null; done   # warm-up
echo "import + unpack of big.tar: $N x per tool, interleaved"
for ((i = 0; i < N; i++)); do
  for ((k = 0; k < ${#ITOOLS[@]}; k++)); do
    t=${ITOOLS[(i + k) % ${#ITOOLS[@]}]}
    "${t}_imp" $S/$t.imp
    "${t}_del" $S/$t.del
  done
done
# What the stores hold with the image in (after one more import each).
berth_imp /dev/null; podman_imp /dev/null
DU_BERTH=$(du -sm /var/lib/berth/images | cut -f1) DU_POD=$(du -sm /var/lib/containers/storage | cut -f1)
DU_UMOCI=-
[ "$HAVE_UMOCI" = 1 ] && { umoci_imp /dev/null; DU_UMOCI=$(du -smc $D/oci $D/bundle-big | tail -1 | cut -f1); umoci_del /dev/null; }
berth_del /dev/null; podman_del /dev/null

# --- 2. run latency -----------------------------------------------------------
quiet $CTL image import $D/bb.tar
quiet "${POD[@]}" load -q -i $D/bb.tar
HAVE_BUNDLE=0
if [ "$HAVE_UMOCI" = 1 ]; then
  # A bundle of the same image for `berthctl run --bundle` (umoci's spec, no
  # terminal): the container without the image store's part.
  quiet skopeo --insecure-policy copy --quiet docker-archive:$D/bb.tar oci:$D/oci-bb:bb
  quiet umoci unpack --image $D/oci-bb:bb $D/bundle-bb
  HAVE_BUNDLE=1
fi
berth_run()  { quiet $CTL run --rm bench/bb:1 true; }
podman_run() { quiet "${POD[@]}" run --rm --network none --pids-limit -1 localhost/bench/bb:1 true; }
bundle_run() { quiet $CTL run --rm --bundle $D/bundle-bb true; }
RTOOLS=(berth podman)
[ "$HAVE_BUNDLE" = 1 ] && RTOOLS=(berth podman bundle)
for t in "${RTOOLS[@]}"; do "${t}_run"; "${t}_run"; done   # warm-up
echo "run --rm IMAGE true: $NRUN x per tool, interleaved"
for ((i = 0; i < NRUN; i++)); do
  for ((k = 0; k < ${#RTOOLS[@]}; k++)); do
    t=${RTOOLS[(i + k) % ${#RTOOLS[@]}]}
    t0=$(us); "${t}_run"; t1=$(us)
    echo $((t1 - t0)) >> $S/$t.run
  done
done
left=$(systemctl list-units --all --no-legend --plain 'berth-*.scope' 'libpod-*.scope')
[ -z "$left" ] || echo "warning: scopes left over: $left" >&2

# --- report -------------------------------------------------------------------
declare -A INAME=([berth]="berthctl image import" [umoci]="skopeo copy + umoci unpack"
  [podman]="podman load")
declare -A DNAME=([berth]="image rm + image prune" [umoci]="rm -rf oci dir + bundle"
  [podman]="podman rmi")
declare -A DU=([berth]=$DU_BERTH [umoci]=$DU_UMOCI [podman]=$DU_POD)
declare -A IMED
echo
echo "import + unpack of $BIG_MB MB (5 layers), $N runs per tool (ms); MB/s of the archive at the median"
printf '%-28s %8s %8s %8s | %-24s %8s | %s\n' "tool" "median" "p90" "MB/s" "removal" "median" "store MiB"
for t in "${ITOOLS[@]}"; do
  read -r med p90 _ <<<"$(stats $S/$t.imp)"
  read -r dmed _ <<<"$(stats $S/$t.del)"
  IMED[$t]=$med
  printf '%-28s %8s %8s %8s | %-24s %8s | %s\n' "${INAME[$t]}" "$(ms "$med")" "$(ms "$p90")" \
    "$(awk -v m="$BIG_MB" -v u="$med" 'BEGIN {printf "%.0f", m / (u / 1e6)}')" "${DNAME[$t]}" "$(ms "$dmed")" "${DU[$t]}"
done
if [ "$HAVE_UMOCI" = 1 ]; then
  read -r sk _ <<<"$(stats $S/umoci.imp 2)"; read -r um _ <<<"$(stats $S/umoci.imp 3)"
  echo "  skopeo copy median $(ms "$sk") ms, umoci unpack median $(ms "$um") ms"
  printf 'ratio berth/(skopeo+umoci) import median %s\n' "$(ratio "${IMED[berth]}" "${IMED[umoci]}")"
fi
printf 'ratio berth/podman load    import median %s\n' "$(ratio "${IMED[berth]}" "${IMED[podman]}")"

declare -A RNAME=([berth]="berthctl run --rm IMAGE" [podman]="podman run --rm IMAGE"
  [bundle]="berthctl run --rm --bundle")
declare -A RMED
echo
echo "run --rm IMAGE true (busybox, 1 layer), $NRUN runs per tool (ms)"
printf '%-28s %8s %8s\n' "tool" "median" "p90"
for t in "${RTOOLS[@]}"; do
  read -r med p90 _ <<<"$(stats $S/$t.run)"
  RMED[$t]=$med
  printf '%-28s %8s %8s\n' "${RNAME[$t]}" "$(ms "$med")" "$(ms "$p90")"
done
r=$(ratio "${RMED[berth]}" "${RMED[podman]}")
echo "ratio berth/podman run median $r (goal <= 0.2: $(verdict "$r" 0.2))"
[ "$HAVE_BUNDLE" = 1 ] && echo "the image's share of berth's run (IMAGE - --bundle medians): $(ms $((RMED[berth] - RMED[bundle]))) ms"
echo "$SECONDS s in the box"
