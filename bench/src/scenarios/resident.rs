//! Per-container resident cost (issue 22): what one more running container
//! keeps resident on the host, summed over every process that holds
//! something for it — its monitor (Pss, plus the kernel memory charged to
//! its sub-cgroup where memory.stat is readable), systemd's per-unit memory
//! (PID 1's growth between two levels of running containers) and the
//! daemon's growth (berthd, containerd; podman has none) — for berth and
//! each peer at the same N.
//!
//! Growths are slopes between two levels measured on one upward ramp
//! (0→100, 100→N), never across a teardown: systemd and the daemons keep
//! the heap a teardown freed (glibc trims only the top of the heap), so a
//! ramp after one would look free.

use anyhow::{bail, Context, Result};

use super::Ctx;
use crate::measure::{median, Section};

/// Pss and RssAnon (KiB) of a process.
pub fn pss_anon(pid: u32) -> Result<(f64, f64)> {
    let field = |text: &str, key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse::<f64>().ok())
    };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("/proc/{pid}/status"))?;
    let rollup = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup"))
        .with_context(|| format!("/proc/{pid}/smaps_rollup"))?;
    let pss = field(&rollup, "Pss:").context("no Pss")?;
    let anon = field(&status, "RssAnon:").context("no RssAnon")?;
    Ok((pss, anon))
}

fn pid1_variants(running: usize) -> (String, String) {
    (
        format!("systemd (PID 1) Pss, {running} running"),
        format!("systemd (PID 1) RssAnon, {running} running"),
    )
}

fn units_variant(running: usize) -> String {
    format!("systemd units loaded, {running} running")
}

pub fn daemon_variant(running: usize) -> String {
    format!("daemon Pss, {running} running")
}

fn kernel_variant(running: usize) -> String {
    format!("monitor's cgroup kernel memory, {running} running")
}

fn cost_variant(running: usize) -> String {
    format!("resident cost per container, {running} running")
}

/// systemd (PID 1 of the box) now, as `tool`'s reading at `running`.
pub fn systemd_at(s: &mut Section, tool: &str, running: usize) -> Result<()> {
    let comm = std::fs::read_to_string("/proc/1/comm").unwrap_or_default();
    if comm.trim() != "systemd" {
        bail!("PID 1 is {:?}, not systemd", comm.trim());
    }
    let (pss, anon) = pss_anon(1)?;
    let (vp, va) = pid1_variants(running);
    s.push(tool, &vp, vec![pss]);
    s.push(tool, &va, vec![anon]);
    // How many units it holds: a container may cost it more than one
    // (podman: the container's scope and conmon's).
    let units = crate::env::sh(
        "systemctl",
        &["list-units", "--all", "--plain", "--no-legend"],
    )?;
    s.push(
        tool,
        &units_variant(running),
        vec![units.lines().count() as f64],
    );
    Ok(())
}

/// The daemon's Pss (median of 5 readings 200 ms apart, as its VmRSS).
pub fn daemon_at(s: &mut Section, tool: &str, pid: u32, running: usize) -> Result<()> {
    let mut v = Vec::new();
    for _ in 0..5 {
        v.push(pss_anon(pid)?.0);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    s.push(
        tool,
        &daemon_variant(running),
        vec![median(&v).context("no readings")?],
    );
    Ok(())
}

/// The kernel's memory charged to each monitor's sub-cgroup (stacks, page
/// tables, sockets, slab: what Pss does not see), where the memory
/// controller is on there. Returns how many were read.
pub fn monitor_kernel_at(s: &mut Section, dir: &std::path::Path, running: usize) -> usize {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    let v: Vec<f64> = entries
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("memory.stat")).ok())
        .filter_map(|stat| kernel_kib(&stat))
        .collect();
    let n = v.len();
    if n > 0 {
        s.push("berth", &kernel_variant(running), v);
    }
    n
}

/// memory.stat's kernel memory in KiB: the `kernel` line (Linux ≥ 5.18),
/// else the sum of its parts.
fn kernel_kib(stat: &str) -> Option<f64> {
    let get = |key: &str| {
        stat.lines().find_map(|l| {
            let (k, v) = l.split_once(' ')?;
            (k == key).then(|| v.trim().parse::<f64>().ok()).flatten()
        })
    };
    if let Some(k) = get("kernel") {
        return Some(k / 1024.0);
    }
    let parts = ["kernel_stack", "pagetables", "percpu", "sock", "slab"];
    let sum: Option<f64> = parts.iter().map(|k| get(k)).sum();
    sum.map(|b| b / 1024.0)
}

/// One tool's cost per container at `level`, from the readings at `base`
/// (the level before on the same ramp): (total, its parts described).
fn cost(s: &Section, tool: &str, base: usize, level: usize) -> Option<(f64, String)> {
    let one = |v: &str| s.find(tool, v).and_then(|x| median(&x.samples));
    let slope = |v0: &str, v1: &str| Some((one(v1)? - one(v0)?) / (level - base) as f64);
    let (monitor_v, kernel_v) = (
        format!("monitor Pss, {level} running"),
        kernel_variant(level),
    );
    let monitor = one(&monitor_v)?;
    let kernel = one(&kernel_v).unwrap_or(0.0);
    let (p0, a0) = pid1_variants(base);
    let (p1, a1) = pid1_variants(level);
    // A heap that shrank (the ramp reused room an earlier teardown freed)
    // counts 0, not a credit; the note shows the raw figure.
    let systemd_raw = slope(&p0, &p1)?;
    let systemd = systemd_raw.max(0.0);
    let systemd_anon = slope(&a0, &a1).unwrap_or(f64::NAN);
    // podman has no daemon: nothing grows but systemd and conmon.
    let daemon = match tool {
        "podman" => 0.0,
        _ => slope(&daemon_variant(base), &daemon_variant(level))?.max(0.0),
    };
    let units = slope(&units_variant(base), &units_variant(level)).unwrap_or(f64::NAN);
    let total = monitor + kernel + systemd + daemon;
    let parts = format!(
        "monitor Pss {monitor:.0}{} + systemd {systemd:.1} (Pss growth {systemd_raw:.1}, \
         RssAnon {systemd_anon:.1}; {units:.2} units per container) + daemon {daemon:.1} KiB",
        if one(&kernel_v).is_some() {
            format!(" + its cgroup's kernel memory {kernel:.0}")
        } else {
            String::new()
        }
    );
    Some((total, parts))
}

/// The costs at every level measured, the peers beside berth at SMALL, and
/// the goal at N (≤ 300 KiB at 1000 running).
pub fn goals(ctx: &Ctx, s: &mut Section, small: usize) {
    let n = ctx.scale;
    let mut levels = vec![(0, small.min(n))];
    if n > small {
        levels.push((small, n));
    }
    let peer_names = [
        ("podman", "conmon"),
        ("containerd", "containerd-shim-runc-v2"),
    ];
    for &(base, level) in &levels {
        let mut line = Vec::new();
        let berth = cost(s, "berth", base, level);
        if let Some((total, parts)) = &berth {
            s.push("berth", &cost_variant(level), vec![*total]);
            line.push(format!("berth {total:.0} KiB ({parts})"));
        }
        for (peer, monitor) in peer_names {
            if let Some((total, parts)) = cost(s, peer, base, level) {
                s.push(peer, &cost_variant(level), vec![total]);
                let ratio = berth
                    .as_ref()
                    .map(|(b, _)| format!(", berth/{peer} {:.2}×", b / total))
                    .unwrap_or_default();
                line.push(format!("{peer} {total:.0} KiB ({monitor}: {parts}){ratio}"));
            }
        }
        if !line.is_empty() {
            s.note(format!(
                "resident cost per container, {base}→{level} running: {}",
                line.join("; ")
            ));
        }
    }
    let at_n = cost(s, "berth", levels.last().map_or(0, |l| l.0), n);
    if let Some((total, parts)) = at_n {
        let mut why = format!(
            "{parts}; systemd's and the daemon's parts are slopes between {} and {n} \
             running on one ramp",
            levels.last().map_or(0, |l| l.0)
        );
        if n < 1000 {
            why.push_str(&format!(" (run with --scale {n}: the goal is for 1000)"));
        }
        s.goal(
            &format!("resident cost per container, {n} running"),
            "≤ 300 KiB",
            format!("{total:.0} KiB"),
            total <= 300.0,
            &why,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_memory_from_memory_stat() {
        assert_eq!(kernel_kib("anon 4096\nkernel 20480\nsock 0\n"), Some(20.0));
        let old = "anon 1\nkernel_stack 16384\npagetables 4096\npercpu 0\nsock 0\nslab 4096\n";
        assert_eq!(kernel_kib(old), Some(24.0));
        assert_eq!(kernel_kib("anon 1\n"), None);
    }

    #[test]
    fn cost_sums_monitor_systemd_and_daemon_slopes() {
        let mut s = Section::new("m", "m", crate::measure::Unit::KiB, "");
        s.push(
            "berth",
            "monitor Pss, 100 running",
            vec![140.0, 150.0, 160.0],
        );
        for (n, pid1, daemon) in [(0, 1000.0, 5000.0), (100, 3000.0, 6000.0)] {
            let (p, a) = pid1_variants(n);
            s.push("berth", &p, vec![pid1]);
            s.push("berth", &a, vec![pid1]);
            s.push("berth", &daemon_variant(n), vec![daemon]);
        }
        let (total, _) = cost(&s, "berth", 0, 100).unwrap();
        // 150 + 2000/100 + 1000/100
        assert!((total - 180.0).abs() < 1e-9, "{total}");
    }
}
