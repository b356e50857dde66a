#!/usr/bin/env bash
# Benchmark: berthd's create → start → wait → delete of /bin/true over D-Bus
# (examples/dbus_bench.rs, one connection per worker), serial and 16 in
# parallel, beside `runc --systemd-cgroup run` and `systemd-run --scope true`
# (also with -p DefaultDependencies=no) in the same systemd box run: serial
# runs alternate tool by tool, parallel ones in rounds. Prints medians,
# p90/p99, throughput, berth/peer ratios (goal <= 0.5 x runc) and berthd's
# VmRSS (goal <= 12 MiB idle). The part in the box takes about a minute.
#   bench/berthd.sh [ITERATIONS]      (default 30: serial runs per tool, and
#                                      runs per worker in the parallel part)
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/deps
cargo build --release --quiet -p berthd -p berth-shim -p berth-monitor -p berth-box
# Separately: building an example turns on dev-dependency features, which
# must not change the berthd binary under test.
cargo build --release --quiet -p berthd --example dbus_bench
exec target/release/berth-box run --tmpfs /var/lib/berth-bench -- \
  /bin/bash "$PWD/bench/berthd-inner.sh" "$PWD" "$PWD/target/release" "${1:-30}"
