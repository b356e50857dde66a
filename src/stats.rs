//! GetContainerStats: figures read from the container scope's cgroup (v2).
//! A figure whose controller the tree lacks is reported as "unavailable",
//! never as 0 (on our machines the v2 tree has no memory/pids/io controller).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use zbus::zvariant::{OwnedValue, Value};

/// The v2 cgroup directory of `pid`, as this process sees the tree.
fn cgroup_dir(pid: u32) -> Option<PathBuf> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let rel = text.lines().find_map(|l| l.strip_prefix("0::"))?;
    Some(Path::new("/sys/fs/cgroup").join(rel.trim_start_matches('/')))
}

fn read_u64(path: &Path) -> Option<u64> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

fn keyed(path: &Path, key: &str) -> Option<u64> {
    std::fs::read_to_string(path)
        .ok()?
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
}

/// io.stat's `key=` figures summed over every device ("8:0 rbytes=… wbytes=…").
fn io_total(path: &Path, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    let prefix = format!("{key}=");
    Some(
        text.split_whitespace()
            .filter_map(|f| f.strip_prefix(&prefix)?.parse::<u64>().ok())
            .sum(),
    )
}

fn owned(v: Value<'_>) -> OwnedValue {
    v.try_to_owned().unwrap_or_else(|_| OwnedValue::from(0u32))
}

/// Stats of the cgroup of `pid`: each key maps to a number, or to the string
/// "unavailable" naming why in `<key>_reason`.
pub fn collect(pid: u32) -> Option<HashMap<String, OwnedValue>> {
    let dir = cgroup_dir(pid)?;
    let controllers = std::fs::read_to_string(dir.join("cgroup.controllers")).unwrap_or_default();
    let has = |c: &str| controllers.split_whitespace().any(|x| x == c);
    let mut out = HashMap::new();
    let mut put =
        |key: &str, value: Option<u64>, controller: Option<&str>| match (value, controller) {
            (Some(v), _) => {
                out.insert(key.to_string(), owned(Value::from(v)));
            }
            (None, c) => {
                out.insert(key.to_string(), owned(Value::from("unavailable")));
                let why = match c {
                    Some(c) => format!("no {c} controller in this cgroup tree"),
                    None => "not reported by the kernel".to_string(),
                };
                out.insert(format!("{key}_reason"), owned(Value::from(why)));
            }
        };
    // cpu.stat's usage is core accounting: present without the cpu controller.
    put(
        "cpu_usage_usec",
        keyed(&dir.join("cpu.stat"), "usage_usec"),
        None,
    );
    put(
        "memory_current",
        has("memory")
            .then(|| read_u64(&dir.join("memory.current")))
            .flatten(),
        Some("memory"),
    );
    put(
        "pids_current",
        has("pids")
            .then(|| read_u64(&dir.join("pids.current")))
            .flatten(),
        Some("pids"),
    );
    for (key, field) in [("io_read_bytes", "rbytes"), ("io_write_bytes", "wbytes")] {
        put(
            key,
            has("io")
                .then(|| io_total(&dir.join("io.stat"), field))
                .flatten(),
            Some("io"),
        );
    }
    let procs = std::fs::read_to_string(dir.join("cgroup.procs"))
        .map(|t| t.lines().count() as u64)
        .ok();
    put("processes", procs, None);
    // memory.max reads "max" without a limit: no key then (the reader
    // compares with the host's memory, as podman shows it).
    if let Some(max) = has("memory")
        .then(|| read_u64(&dir.join("memory.max")))
        .flatten()
    {
        out.insert("memory_max".into(), owned(Value::from(max)));
    }
    Some(out)
}

/// Manager.Info: what berthd runs on and how many containers it holds.
pub fn info(daemon: &crate::daemon::Daemon) -> HashMap<String, OwnedValue> {
    let records = daemon.store.list().unwrap_or_default();
    let count = |s| records.iter().filter(|r| r.status == s).count() as u32;
    let mut out = HashMap::new();
    let mut put = |k: &str, v: Value<'_>| {
        out.insert(k.to_string(), owned(v));
    };
    put("version", Value::from(env!("CARGO_PKG_VERSION")));
    put("containers", Value::from(records.len() as u32));
    // Creating is a passing state, not counted (as before it had a name).
    for status in &crate::lifecycle::Status::ALL[1..] {
        put(&format!("containers_{status}"), Value::from(count(*status)));
    }
    let dir = |p: &Path| p.to_string_lossy().into_owned();
    let state = daemon.bundles_dir.parent().unwrap_or(Path::new("/"));
    put("state_dir", Value::from(dir(state)));
    put("run_dir", Value::from(dir(&daemon.run_dir)));
    put("cgroup_driver", Value::from("systemd"));
    let v2 = Path::new("/sys/fs/cgroup/cgroup.controllers");
    put(
        "cgroup_version",
        Value::from(if v2.exists() { "v2" } else { "v1/hybrid" }),
    );
    let controllers = std::fs::read_to_string(v2).unwrap_or_default();
    put("cgroup_controllers", Value::from(controllers.trim()));
    let uname = nix::sys::utsname::uname().ok();
    let kernel = uname
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    put("kernel", Value::from(kernel));
    put("shim", Value::from(dir(&daemon.shim)));
    out
}
