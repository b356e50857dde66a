//! Scenarios 1 and 2: create → start → exit → delete of /bin/true, serial
//! and with 16 and 64 clients at once.

use std::collections::BTreeMap;

use anyhow::Result;

use super::Ctx;
use crate::engines::Op;
use crate::measure::{concurrent, interleave, percentile, rotation, timed, Section, Unit};

/// Rounds of the concurrent variants (each round: every worker one lifecycle).
const CONCURRENT_ROUNDS: usize = 3;

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "lifecycle",
        "Lifecycle: create → start → exit → delete of /bin/true",
        Unit::Ms,
        "One lifecycle of a busybox bundle running /bin/true, timed from the first \
         command (or D-Bus call) to the container's removal. berth: CreateContainer, \
         StartContainer, WaitContainer, DeleteContainer on one connection to berthd's private socket (root's, as berthctl's: docs/api.md); \
         runc: `runc --systemd-cgroup run`; podman: `podman run --rm --rootfs`; \
         containerd: `ctr run --rm --rootfs --runc-systemd-cgroup`; systemd-run: \
         `systemd-run --scope /bin/true` (no container: the floor). Serial: the tools \
         take turns, the order rotating each round. Concurrent: N clients at once, \
         one lifecycle each, rounds interleaved tool by tool; each sample is one \
         lifecycle's latency.",
    );
    let engines = ctx.engines_for(Op::Lifecycle);
    let names: Vec<&str> = engines.iter().map(|e| e.name()).collect();
    let by_name = |n: &str| engines.iter().find(|e| e.name() == n).copied();

    // Warm-up, not counted: page cache, unit load paths, the bus.
    for e in &engines {
        for i in 0..2 {
            e.lifecycle(&format!("warm-{}-{i}", e.name()))?;
        }
    }
    let serial = interleave(&names, ctx.iterations, |tool, i| {
        let e = by_name(tool).ok_or_else(|| anyhow::anyhow!("no engine {tool}"))?;
        timed(|| e.lifecycle(&format!("ser-{tool}-{i}")))
    })?;
    for (tool, samples) in serial {
        s.push(&tool, "serial", samples);
    }

    let rounds = CONCURRENT_ROUNDS.min(ctx.iterations);
    for &workers in &ctx.concurrency {
        let variant = format!("{workers} concurrent");
        let mut latency: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        let mut per_sec: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
        for (round, k) in rotation(engines.len(), rounds) {
            let e = engines[k];
            let (lat, wall) = concurrent(workers, 1, |w, _| {
                timed(|| e.lifecycle(&format!("par{workers}-{}-{round}-{w}", e.name())))
            })?;
            latency.entry(e.name()).or_default().extend(lat);
            per_sec
                .entry(e.name())
                .or_default()
                .push(workers as f64 * 1000.0 / wall);
        }
        for (tool, samples) in latency {
            s.push(tool, &variant, samples);
        }
        for (tool, v) in per_sec {
            let p50 = percentile(&v, 0.5).unwrap_or(0.0);
            s.note(format!(
                "{tool}, {variant}: {p50:.1} lifecycles/s (median of {rounds} rounds)"
            ));
        }
    }

    // The floor: one transient scope with one process in it and no
    // container, which every systemd-driven engine pays for at least once.
    let floor = s.ratio("systemd-run", "serial").map_or(String::new(), |r| {
        format!(
            "; berth is {r:.2}× `systemd-run --scope /bin/true` (one scope, no container: \
                 the floor, mostly the kernel's cgroup migration waiting for an RCU grace \
                 period — docs/performance.md)"
        )
    });
    // Issue 22's goals: a container costs no more than systemd's bare scope,
    // serial or with many clients at once.
    for (peer, target) in [("runc", 0.4), ("podman", 0.1), ("systemd-run", 1.0)] {
        if let Some(r) = s.ratio(peer, "serial") {
            s.goal(
                &format!("lifecycle vs {peer}"),
                &format!("≤ {target}× {peer}"),
                format!("{r:.2}×"),
                r <= target,
                &format!("serial medians{floor}"),
            );
        }
    }
    for &workers in &ctx.concurrency {
        let variant = format!("{workers} concurrent");
        if let Some(r) = s.ratio("systemd-run", &variant) {
            s.goal(
                &format!("{workers} concurrent lifecycles vs systemd-run"),
                "≤ 1.5× `systemd-run --scope`",
                format!("{r:.2}×"),
                r <= 1.5,
                "medians of the per-lifecycle latencies at the same concurrency",
            );
        }
    }
    Ok(s)
}
