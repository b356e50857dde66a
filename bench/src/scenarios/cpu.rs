//! CPU per lifecycle: the CPU time spent per create → start → exit → delete
//! of /bin/true, not its latency — by every process in the box, and by the
//! two every engine shares: systemd (PID 1) and dbus-daemon.
//!
//! From cgroup v2's cpu.stat `usage_usec` (present without the cpu
//! controller): the box's own cgroup (its cgroup namespace's root: every
//! process in it, the engine's daemon, shims, monitors, containers, the
//! client — runc and podman *are* their client), init.scope and
//! dbus.service. A process's time stays with the cgroup it ran in, so a
//! shim that moved or a monitor reaped by PID 1 is counted all the same,
//! which /proc/PID/stat (the reaper's cutime) would not do.

use std::time::Duration;

use anyhow::{Context, Result};

use super::Ctx;
use crate::engines::Op;
use crate::measure::{rotation, Section, Unit};

/// Lifecycles per sample: the figure is their CPU over their number.
const BATCH: usize = 5;
/// After a batch, before the reading: what a lifecycle leaves to finish in
/// the background (systemd collecting the scope, a monitor's exit) is
/// counted in its own batch. Idle CPU of the box meanwhile is counted too.
const SETTLE: Duration = Duration::from_millis(300);

/// (variant, cgroup under the box's root; "" the root itself).
const PARTS: &[(&str, &str)] = &[
    ("everything", ""),
    ("systemd", "init.scope"),
    ("dbus-daemon", "system.slice/dbus.service"),
    // berth's own parts (near 0 for the peers: berthd idles meanwhile),
    // and machined, which berthd registers each container with.
    ("berthd", "system.slice/berthd.service"),
    ("berth.slice (containers, monitors)", "berth.slice"),
    ("machined", "system.slice/systemd-machined.service"),
];

/// usage_usec of `cgroup` (relative to the box's root), in ms.
fn usage_ms(cgroup: &str) -> Result<f64> {
    let path = std::path::Path::new("/sys/fs/cgroup")
        .join(cgroup)
        .join("cpu.stat");
    let text = match std::fs::read_to_string(&path) {
        // Not there (yet): nothing ran in it. berth.slice exists from the
        // first container on; machined is socket-activated.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && !cgroup.is_empty() => return Ok(0.0),
        r => r.with_context(|| path.display().to_string())?,
    };
    text.lines()
        .find_map(|l| l.strip_prefix("usage_usec "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map(|us| us / 1000.0)
        .with_context(|| format!("no usage_usec in {}", path.display()))
}

fn readings() -> Result<Vec<f64>> {
    PARTS.iter().map(|(_, cg)| usage_ms(cg)).collect()
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let mut s = Section::new(
        "cpu",
        "CPU per lifecycle: create → start → exit → delete of /bin/true",
        Unit::Ms,
        &format!(
            "CPU time (user + system, ms) per lifecycle of scenario 1, from cgroup v2 \
             cpu.stat usage_usec read before and {} ms after a batch of {BATCH} serial \
             lifecycles of one engine, over {BATCH}; batches interleaved engine by engine. \
             \"everything\": the box's cgroup (the engine's daemon, shims, monitors, \
             containers, its client, systemd, dbus-daemon, journald, and the box's idle \
             processes during the batch); \"systemd\": init.scope (PID 1); \"dbus-daemon\": \
             dbus.service; berth's parts: berthd.service, berth.slice (the containers' scopes \
             and berthd-monitors.scope: shims, monitors, inits), and machined (berthd \
             registers each container).",
            SETTLE.as_millis()
        ),
    );
    let engines = ctx.engines_for(Op::Lifecycle);
    // 6 samples per engine in the full run (30 iterations), 1 in a smoke run.
    let rounds = (ctx.iterations / BATCH).max(1);
    let mut samples: Vec<Vec<Vec<f64>>> = vec![vec![Vec::new(); PARTS.len()]; engines.len()];
    for (round, k) in rotation(engines.len(), rounds) {
        let e = engines[k];
        std::thread::sleep(SETTLE);
        let before = readings()?;
        for i in 0..BATCH {
            e.lifecycle(&format!("cpu-{}-{round}-{i}", e.name()))
                .with_context(|| format!("{}, round {round}", e.name()))?;
        }
        std::thread::sleep(SETTLE);
        let after = readings()?;
        for (p, (a, b)) in after.iter().zip(&before).enumerate() {
            samples[k][p].push((a - b) / BATCH as f64);
        }
    }
    for (k, e) in engines.iter().enumerate() {
        for (p, (variant, cgroup)) in PARTS.iter().enumerate() {
            // berthd and berth.slice only idle while a peer runs: a row of
            // zeros would only make a meaningless ratio in the table.
            if e.name() != "berth" && cgroup.contains("berth") {
                continue;
            }
            s.push(e.name(), variant, std::mem::take(&mut samples[k][p]));
        }
    }
    if let Some(r) = s.ratio("runc", "everything") {
        s.goal(
            "CPU per lifecycle vs runc",
            "≤ 0.5× runc (runc + systemd + dbus-daemon)",
            format!("{r:.2}×"),
            r <= 0.5,
            "medians of \"everything\"",
        );
    }
    Ok(s)
}
