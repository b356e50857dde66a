//! Scenario 7: reading the stats of every running container. Measured
//! inside the shared scale run (scale.rs), with 100 and N running.

use std::time::Instant;

use anyhow::{bail, Result};

use super::scale::{pool_all, shared, CLIENTS};
use super::Ctx;
use crate::env::{sh, CONTAINERD_SOCKET};
use crate::measure::{ms, timed, Section, Unit};

/// Sweeps over all containers per variant (each one a sample).
const SWEEPS: usize = 3;

pub fn run(ctx: &Ctx) -> Result<Section> {
    shared(ctx, "stats")
}

pub fn section() -> Section {
    Section::new(
        "stats",
        "Stats of every running container",
        Unit::Ms,
        "berth: GetContainerStats of each running container (cgroup figures: cpu \
         usage, processes; memory and pids are \"unavailable\" in the box, which \
         has no such controllers), with 100 and N running: \"per call\" is each \
         call's latency in a sweep by one client; \"all N\" is the wall time of one \
         sweep over every container, by one client or by 16 clients at once \
         (3 sweeps each). podman: `podman stats --no-stream --all` (one command for \
         all; 3 runs). containerd: `ctr task metrics ID` for each task, one client \
         (a process per call).",
    )
}

/// Stats of every one of `ids`: per call, and whole sweeps by 1 and CLIENTS
/// clients.
pub fn berth_at(ctx: &Ctx, s: &mut Section, ids: &[String]) -> Result<()> {
    let n = ids.len();
    let read = |id: &str| -> Result<()> {
        let stats = ctx.berth.stats(id)?;
        if !stats.contains_key("cpu_usage_usec") {
            bail!("GetContainerStats {id}: no cpu_usage_usec");
        }
        Ok(())
    };
    // Warm-up sweep, not counted.
    for id in ids {
        read(id)?;
    }
    let mut per_call = Vec::with_capacity(n);
    let mut one = Vec::new();
    for _ in 0..SWEEPS {
        let t0 = Instant::now();
        for id in ids {
            per_call.push(timed(|| read(id))?);
        }
        one.push(ms(t0.elapsed()));
    }
    let mut many = Vec::new();
    for _ in 0..SWEEPS {
        let (_, err, wall) = pool_all(CLIENTS, n, |k| read(&ids[k]).map(|()| 0.0));
        if let Some(e) = err {
            return Err(e);
        }
        many.push(wall);
    }
    s.push("berth", &per_call_variant(n), per_call);
    s.push("berth", &all_variant(n, 1), one);
    s.push("berth", &all_variant(n, CLIENTS), many);
    Ok(())
}

fn per_call_variant(n: usize) -> String {
    format!("per call, {n} running")
}

fn all_variant(n: usize, clients: usize) -> String {
    format!(
        "all {n}, {clients} client{}",
        if clients == 1 { "" } else { "s" }
    )
}

/// The peer's stats of its `ids`, all running.
pub fn peer(s: &mut Section, peer: &str, ids: &[String]) -> Result<()> {
    let n = ids.len();
    match peer {
        "podman" => {
            let mut all = Vec::new();
            for _ in 0..SWEEPS {
                all.push(timed(|| podman_stats(n))?);
            }
            s.push("podman", &all_variant(n, 1), all);
        }
        "containerd" => {
            let mut per_call = Vec::with_capacity(n);
            let t0 = Instant::now();
            for id in ids {
                per_call.push(timed(|| {
                    sh(
                        "ctr",
                        &["--address", CONTAINERD_SOCKET, "task", "metrics", id],
                    )
                    .map(drop)
                })?);
            }
            s.push("containerd", &all_variant(n, 1), vec![ms(t0.elapsed())]);
            s.push("containerd", &per_call_variant(n), per_call);
        }
        _ => bail!("no stats command known for {peer}"),
    }
    Ok(())
}

/// `podman stats --no-stream --all`, which must list `n` containers.
fn podman_stats(n: usize) -> Result<()> {
    let out = crate::engines::podman()
        .args(["stats", "--no-stream", "--all", "--format", "{{.ID}}"])
        .output()?;
    if !out.status.success() {
        bail!(
            "podman stats: {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    let listed = String::from_utf8_lossy(&out.stdout).lines().count();
    if listed < n {
        bail!("podman stats listed {listed} containers, not {n}");
    }
    Ok(())
}
