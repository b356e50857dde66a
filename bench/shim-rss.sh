#!/usr/bin/env bash
# Benchmark: per-container memory of berth's shim beside conmon (podman's
# monitor), N idle `sleep` containers each, in the same systemd box run.
# Prints VmRSS and Pss per monitor process (median) and the ratios.
#   bench/shim-rss.sh [N]      (default 100)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps
for p in podman conmon; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="${missing:-} $p"
done
[ -z "${missing:-}" ] || { apt-get update -qq; DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >/dev/null; }
cargo build --release --quiet -p berth-runtime -p berth-shim -p berth-monitor -p berth-box
scripts/static-monitor target/release >/dev/null
exec target/release/berth-box run --tmpfs /var/lib/containers --tmpfs /var/lib/berth-bench -- \
  /bin/bash "$PWD/bench/shim-rss-inner.sh" "$PWD/target/release" "${1:-100}"
