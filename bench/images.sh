#!/usr/bin/env bash
# Benchmark: images, berth beside podman and skopeo + umoci in the same
# systemd box run, interleaved (see images-inner.sh):
#  - import + unpack of a ~100 MB docker-save archive (5 layers, built here
#    without network, incompressible data): `berthctl image import` (berthd
#    unpacks on import) vs `skopeo copy docker-archive: oci:` + `umoci unpack`
#    vs `podman load` (overlay storage); removal between the runs;
#  - `berthctl run --rm IMAGE true` vs `podman run --rm IMAGE true` (runc,
#    systemd cgroups, --network none) on a one-layer busybox image (goal <= 0.2 x).
# Prints medians, p90 and the ratios. The part in the box takes about a
# minute with the default N.
#   bench/images.sh [ITERATIONS]      (default 10 imports per tool; 5 x as
#                                      many runs per tool)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps
missing=
for p in podman umoci openssl; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
[ -z "$missing" ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
cargo build --release --quiet -p berthd -p berthctl -p berth-shim -p berth-monitor -p berth-box
exec target/release/berth-box run --tmpfs /var/lib/containers --tmpfs /var/lib/berth-bench -- \
  /bin/bash "$PWD/bench/images-inner.sh" "$PWD" "$PWD/target/release" "${1:-10}"
