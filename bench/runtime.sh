#!/usr/bin/env bash
# Benchmark: `berth-runtime run` beside `runc --systemd-cgroup run` and
# `runc run` (cgroupfs) on the same busybox bundle running /bin/true, in the
# same systemd box, interleaved. Prints medians, p90 and berth/peer ratios.
#   bench/runtime.sh [ITERATIONS]      (default 50)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps
cargo build --release --quiet -p berth-runtime -p berth-box
exec target/release/berth-box run --tmpfs /var/lib/berth-bench -- \
  /bin/bash "$PWD/bench/runtime-inner.sh" "$PWD/target/release/berth-runtime" "${1:-50}"
