//! Scenario 5: memory — each container's long-lived monitor process
//! (berth-monitor, podman's conmon, containerd-shim-runc-v2) and the daemon
//! (berthd, containerd) at 0, 100 and N running containers. Measured inside
//! the shared scale run (scale.rs), which creates the containers once.

use std::time::Duration;

use anyhow::{bail, Context, Result};

use super::scale::{shared, SMALL};
use super::{resident, Ctx};
use crate::env::sh;
use crate::measure::{median, pids_named, rss_pss, Section, Unit};

pub fn run(ctx: &Ctx) -> Result<Section> {
    shared(ctx, "memory")
}

pub fn section() -> Section {
    Section::new(
        "memory",
        "Memory: per-container monitor and daemon",
        Unit::KiB,
        "VmRSS (/proc/PID/status) and Pss (/proc/PID/smaps_rollup) of every \
         per-container monitor process — berth-monitor, conmon (podman), \
         containerd-shim-runc-v2 (containerd) — with that many containers running \
         `sleep` (samples: one per process), and the daemon's VmRSS (berthd, \
         containerd; podman has none) as the median of 5 readings 200 ms apart. \
         berthd idle is a fresh start (systemctl restart) with no container; \
         berth runs 100 and then N, the peers 100 (see the scale section). VmRSS \
         counts shared library pages in full; Pss splits them among the processes \
         that map them (the real per-container cost). Resident cost per \
         container: the monitor's median Pss (+ the kernel memory charged to its \
         sub-cgroup, where memory.stat is readable) + systemd's (PID 1's) Pss \
         growth per container + the daemon's Pss growth per container, the growths \
         as slopes between two levels of one ramp (0→100, 100→N); the peers ramp \
         first, so berth's teardown of N leaves them no freed heap to reuse.",
    )
}

/// The daemon's VmRSS: the median of a few readings (a burst's garbage may
/// still be going).
fn daemon_rss(pid: u32) -> Result<f64> {
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(rss_pss(pid)?.0);
        std::thread::sleep(Duration::from_millis(200));
    }
    median(&v).context("no readings")
}

fn berthd(ctx: &Ctx) -> Result<u32> {
    let pid = ctx.env.berthd_pid()?;
    if pid == 0 {
        bail!("berthd is not running");
    }
    Ok(pid)
}

/// How many fds and threads berthd has (a limit at scale, see
/// docs/operations.md).
fn fds_threads(pid: u32) -> String {
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("Threads:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default();
    format!("{fds} fds, {threads} threads")
}

/// berthd started afresh with no container.
pub fn berthd_idle(ctx: &Ctx, s: &mut Section) -> Result<()> {
    let before = berthd(ctx)?;
    let rss_before = rss_pss(before)?.0;
    sh("systemctl", &["restart", "berthd"])?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = berthd(ctx)?;
    let rss = daemon_rss(pid)?;
    s.push("berth", &daemon_variant(0), vec![rss]);
    resident::daemon_at(s, "berth", pid, 0)?;
    resident::systemd_at(s, "berth", 0)?;
    s.note(format!(
        "berthd idle: {rss:.0} KiB VmRSS after a fresh start ({}); {rss_before:.0} KiB \
         before that restart, after the earlier scenarios",
        fds_threads(pid)
    ));
    Ok(())
}

fn daemon_variant(running: usize) -> String {
    format!("daemon VmRSS, {running} running")
}

fn monitor_variants(running: usize) -> (String, String) {
    (
        format!("monitor VmRSS, {running} running"),
        format!("monitor Pss, {running} running"),
    )
}

/// Every process named `comm`: its VmRSS and Pss, as two series; `expect`
/// of them should be there.
fn monitors(s: &mut Section, tool: &str, comm: &str, running: usize) -> Result<()> {
    let pids = pids_named(comm);
    if pids.len() < running {
        bail!(
            "{} {comm} processes with {running} containers running",
            pids.len()
        );
    }
    let (mut rss, mut pss) = (Vec::new(), Vec::new());
    for pid in pids {
        // One may exit between the listing and the reading: skip it.
        if let Ok((r, p)) = rss_pss(pid) {
            rss.push(r);
            pss.push(p);
        }
    }
    let (vr, vp) = monitor_variants(running);
    s.push(tool, &vr, rss);
    s.push(tool, &vp, pss);
    Ok(())
}

/// berth with `running` containers: every berth-monitor and berthd.
pub fn berth_at(ctx: &Ctx, s: &mut Section, running: usize) -> Result<()> {
    monitors(s, "berth", "berth-monitor", running)?;
    let pid = berthd(ctx)?;
    s.push("berth", &daemon_variant(running), vec![daemon_rss(pid)?]);
    resident::daemon_at(s, "berth", pid, running)?;
    resident::systemd_at(s, "berth", running)?;
    let dir = std::path::Path::new("/sys/fs/cgroup/berth.slice/berthd-monitors.scope");
    if resident::monitor_kernel_at(s, dir, running) == 0 && running == SMALL {
        s.note(format!(
            "the monitors' sub-cgroups have no memory.stat (no memory controller in {}): \
             their kernel memory is not counted",
            dir.display()
        ));
    }
    s.note(format!(
        "berthd with {running} running: {}",
        fds_threads(pid)
    ));
    Ok(())
}

/// berthd right after a restart re-attached `running` containers.
pub fn berthd_after_restart(ctx: &Ctx, s: &mut Section, running: usize) -> Result<()> {
    let pid = berthd(ctx)?;
    s.push(
        "berth",
        &format!("daemon VmRSS, {running} re-attached"),
        vec![daemon_rss(pid)?],
    );
    Ok(())
}

/// berthd after every container of the scale run was deleted (a leak
/// would show here).
pub fn berthd_at_end(ctx: &Ctx, s: &mut Section) -> Result<()> {
    let pid = berthd(ctx)?;
    s.push(
        "berth",
        &format!("daemon VmRSS, 0 after {}", ctx.scale),
        vec![daemon_rss(pid)?],
    );
    s.note(format!(
        "berthd after all {} were deleted: {}",
        ctx.scale,
        fds_threads(pid)
    ));
    Ok(())
}

pub fn containerd_at(s: &mut Section, running: usize) -> Result<()> {
    let pid: u32 = sh("systemctl", &["show", "-P", "MainPID", "bench-containerd"])?
        .trim()
        .parse()?;
    if pid == 0 {
        bail!("bench-containerd is not running");
    }
    s.push(
        "containerd",
        &daemon_variant(running),
        vec![daemon_rss(pid)?],
    );
    resident::daemon_at(s, "containerd", pid, running)
}

/// A peer before its ramp: systemd's baseline (and containerd's).
pub fn peer_before(s: &mut Section, peer: &str) -> Result<()> {
    resident::systemd_at(s, peer, 0)?;
    if peer == "containerd" {
        containerd_at(s, 0)?;
    }
    Ok(())
}

/// A peer with `running` containers: its monitors (and containerd).
pub fn peer_at(s: &mut Section, peer: &str, running: usize) -> Result<()> {
    resident::systemd_at(s, peer, running)?;
    match peer {
        "podman" => monitors(s, "podman", "conmon", running),
        "containerd" => {
            // comm is cut at 15 bytes: containerd-shim-runc-v2.
            monitors(s, "containerd", "containerd-shim", running)?;
            containerd_at(s, running)
        }
        _ => bail!("no monitor process known for {peer}"),
    }
}

fn kib(v: f64) -> String {
    if v >= 1024.0 {
        format!("{:.1} MiB", v / 1024.0)
    } else {
        format!("{v:.0} KiB")
    }
}

/// The goals, from what was measured.
pub fn goals(ctx: &Ctx, s: &mut Section) {
    let n = ctx.scale;
    let med = |s: &Section, tool: &str, variant: &str| {
        s.find(tool, variant).and_then(|x| median(&x.samples))
    };
    let small = SMALL.min(n);
    resident::goals(ctx, s, SMALL);
    let (rss_v, pss_v) = monitor_variants(small);
    if let (Some(rss), Some(pss)) = (med(s, "berth", &rss_v), med(s, "berth", &pss_v)) {
        let peers: Vec<String> = [
            ("podman", "conmon"),
            ("containerd", "containerd-shim-runc-v2"),
        ]
        .into_iter()
        .filter_map(|(t, name)| {
            Some(format!(
                "{name} {} / {}",
                kib(med(s, t, &rss_v)?),
                kib(med(s, t, &pss_v)?)
            ))
        })
        .collect();
        let why = format!(
            "median of {small} berth-monitors, VmRSS / Pss {} / {}{}; VmRSS counts \
             in full the code pages every monitor shares (a dynamic build: ~1.2 MiB \
             of glibc's; bench/run measures the static-pie one berth ships) — Pss \
             is the per-container cost",
            kib(rss),
            kib(pss),
            if peers.is_empty() {
                String::new()
            } else {
                format!("; peers: {}", peers.join(", "))
            }
        );
        s.goal(
            "shim (berth-monitor) VmRSS",
            "≤ 1 MiB",
            kib(rss),
            rss <= 1024.0,
            &why,
        );
    }
    if let Some(idle) = med(s, "berth", &daemon_variant(0)) {
        s.goal(
            "berthd VmRSS idle",
            "≤ 12 MiB",
            kib(idle),
            idle <= 12.0 * 1024.0,
            "fresh start, no container",
        );
    }
    if let Some(full) = med(s, "berth", &daemon_variant(n)) {
        let after = med(s, "berth", &format!("daemon VmRSS, {n} re-attached"));
        let worst = after.map_or(full, |a| a.max(full));
        let mut why = format!(
            "after creating {n}: {}; after a restart re-attached them: {}",
            kib(full),
            after.map_or("not measured".into(), kib)
        );
        if n < 1000 {
            why.push_str(&format!(" (run with --scale {n}: the goal is for 1000)"));
        }
        s.goal(
            &format!("berthd VmRSS with {n} containers"),
            "≤ 40 MiB (1000 containers)",
            kib(worst),
            worst <= 40.0 * 1024.0,
            &why,
        );
    }
    if n > SMALL {
        s.note(format!(
            "peers ran {SMALL} containers, not {n}: podman and containerd at {n} \
             would take most of the run's time on 2 cores"
        ));
    }
}
