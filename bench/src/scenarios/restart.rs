//! Scenario 6: the daemon restarted under N running containers — how long
//! until every container is back on the bus. Measured inside the shared
//! scale run (scale.rs).

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use zbus::zvariant::OwnedObjectPath;

use super::scale::{pool_all, shared, CLIENTS};
use super::Ctx;
use crate::env::{sh, CONTAINERD_SOCKET};
use crate::measure::{ms, percentile, Section, Unit};

/// Restarts per level (each one a sample).
const ROUNDS: usize = 3;
/// A daemon not back by then counts as a failure.
const DEADLINE: Duration = Duration::from_secs(60);

pub fn run(ctx: &Ctx) -> Result<Section> {
    shared(ctx, "restart")
}

pub fn section() -> Section {
    Section::new(
        "restart",
        "Daemon restart under running containers",
        Unit::Ms,
        "`systemctl restart berthd` with 100 and then N containers running, 3 times \
         each; the clock runs from the restart order until ListContainers (polled) \
         lists every container running (\"listed\"), and then until every \
         container's object answers a Properties.Get of its Status with \"running\" \
         (16 clients at once; \"back\"). berthd puts its objects on the bus before \
         it owns its name, so a caller that reaches it finds them all. containerd: \
         `systemctl restart bench-containerd` (KillMode=process, as its packaged \
         unit) with 100 tasks, until `ctr task ls` lists every one RUNNING. podman \
         has no daemon.",
    )
}

/// ROUNDS restarts of berthd with `ids` running.
pub fn berth_at(ctx: &Ctx, s: &mut Section, ids: &[String]) -> Result<()> {
    let n = ids.len();
    let (mut listed, mut back) = (Vec::new(), Vec::new());
    for _ in 0..ROUNDS {
        let old = ctx.env.berthd_pid()?;
        let t0 = Instant::now();
        sh("systemctl", &["restart", "berthd"])?;
        let t_systemctl = ms(t0.elapsed());
        let paths = wait_listed(ctx, ids, t0)?;
        listed.push(ms(t0.elapsed()));
        let (_, err, _) = pool_all(CLIENTS, paths.len(), |k| {
            let status = ctx.berth.object_status(&paths[k])?;
            if status != "running" {
                bail!("{} answers Status {status:?}", paths[k].as_str());
            }
            Ok(0.0)
        });
        if let Some(e) = err {
            return Err(e.context("after the restart"));
        }
        back.push(ms(t0.elapsed()));
        let new = ctx.env.berthd_pid()?;
        if new == old || new == 0 {
            bail!("berthd was not restarted (pid {old} → {new})");
        }
        println!(
            "  berthd restart with {n}: systemctl {t_systemctl:.0} ms, listed {:.0} ms, back {:.0} ms",
            listed.last().copied().unwrap_or(0.0),
            back.last().copied().unwrap_or(0.0)
        );
    }
    s.push("berth", &format!("listed, {n} running"), listed);
    s.push("berth", &back_variant(n), back);
    Ok(())
}

fn back_variant(n: usize) -> String {
    format!("back, {n} running")
}

/// Polls ListContainers until every one of `ids` is listed running; their
/// object paths.
fn wait_listed(ctx: &Ctx, ids: &[String], t0: Instant) -> Result<Vec<OwnedObjectPath>> {
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut last = String::new();
    while t0.elapsed() < DEADLINE {
        match ctx.berth.list() {
            Ok(list) => {
                let paths: Vec<OwnedObjectPath> = list
                    .into_iter()
                    .filter(|(id, status, _)| status == "running" && want.contains(id.as_str()))
                    .map(|(_, _, path)| path)
                    .collect();
                if paths.len() == want.len() {
                    return Ok(paths);
                }
                last = format!("{} of {} listed running", paths.len(), want.len());
            }
            Err(e) => last = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Err(anyhow!("berthd not back within {DEADLINE:?}: {last}"))
}

/// ROUNDS restarts of containerd with `ids` running, until `ctr task ls`
/// lists them all RUNNING.
pub fn containerd(s: &mut Section, ids: &[String]) -> Result<()> {
    let want: HashSet<&str> = ids.iter().map(String::as_str).collect();
    let mut back = Vec::new();
    for _ in 0..ROUNDS {
        let t0 = Instant::now();
        sh("systemctl", &["restart", "bench-containerd"])?;
        let mut last = String::new();
        loop {
            if t0.elapsed() > DEADLINE {
                bail!("containerd not back within {DEADLINE:?}: {last}");
            }
            match sh("ctr", &["--address", CONTAINERD_SOCKET, "task", "ls"]) {
                Ok(out) => {
                    let running = out
                        .lines()
                        .filter_map(|l| {
                            let mut f = l.split_whitespace();
                            let (id, status) = (f.next()?, f.nth(1)?);
                            (status == "RUNNING" && want.contains(id)).then_some(())
                        })
                        .count();
                    if running == want.len() {
                        break;
                    }
                    last = format!("{running} of {} listed RUNNING", want.len());
                }
                Err(e) => last = format!("{e:#}"),
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        back.push(ms(t0.elapsed()));
    }
    s.push("containerd", &back_variant(ids.len()), back);
    Ok(())
}

pub fn goals(ctx: &Ctx, s: &mut Section) {
    let n = ctx.scale;
    let Some(worst) = s
        .find("berth", &back_variant(n))
        .and_then(|x| percentile(&x.samples, 1.0))
    else {
        return;
    };
    let mut why = format!(
        "worst of {ROUNDS} restarts, from `systemctl restart berthd` to every object answering"
    );
    if n < 1000 {
        why.push_str(&format!(" (run with --scale {n}: the goal is for 1000)"));
    }
    s.goal(
        &format!("berthd re-attaches {n} containers"),
        "≤ 1 s (1000 containers)",
        format!("{worst:.0} ms"),
        worst <= 1000.0,
        &why,
    );
}
