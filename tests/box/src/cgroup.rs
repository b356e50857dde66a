//! The box's own cgroup on the host's cgroup v2 tree.
//!
//! The launcher moves itself into this cgroup *before* unsharing the cgroup
//! namespace, so the box's systemd sees it as its root (and only manages what is
//! below it), and the host can clean everything up by removing this one subtree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// Where the cgroup v2 hierarchy is mounted on this host and which v2 cgroup this
/// process is in. On a hybrid host (ours: PID 1 is not systemd) that is
/// `/sys/fs/cgroup/unified`; on a unified host it is `/sys/fs/cgroup`.
pub fn v2_mount() -> Result<PathBuf> {
    let mountinfo = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
    mountinfo
        .lines()
        .find_map(|line| {
            // "<id> <parent> <maj:min> <root> <mount point> <opts> ... - <fstype> <source> <super opts>"
            let (left, right) = line.split_once(" - ")?;
            let fstype = right.split_whitespace().next()?;
            let target = left.split_whitespace().nth(4)?;
            (fstype == "cgroup2").then(|| PathBuf::from(target))
        })
        .ok_or(Error::Unsupported(
            "no cgroup2 hierarchy is mounted on this host".into(),
        ))
}

/// This process's cgroup on the v2 tree, as a path below the v2 mount.
fn own_v2_cgroup() -> Result<String> {
    let content = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::io("reading /proc/self/cgroup", e))?;
    Ok(content
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .unwrap_or("/")
        .trim_start_matches('/')
        .to_string())
}

/// Creates `<v2 mount>/<our cgroup>/berth-box-<name>` and returns its path.
pub fn create(name: &str) -> Result<PathBuf> {
    let path = v2_mount()?
        .join(own_v2_cgroup()?)
        .join(format!("berth-box-{name}"));
    fs::create_dir(&path)
        .map_err(|e| Error::io(format!("creating cgroup {}", path.display()), e))?;
    Ok(path)
}

/// Whether `pid` is inside the cgroup subtree at `cgroup` (pid-reuse guard before
/// we signal a pid recorded earlier).
pub fn contains_pid(cgroup: &Path, pid: i32) -> bool {
    let Ok(v2) = v2_mount() else { return false };
    let Ok(rel) = cgroup.strip_prefix(&v2) else {
        return false;
    };
    let want = format!("/{}", rel.display());
    fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map(|c| {
            c.lines()
                .filter_map(|l| l.strip_prefix("0::"))
                .any(|p| p == want || p.starts_with(&format!("{want}/")))
        })
        .unwrap_or(false)
}

/// Removes the subtree depth-first. A cgroup whose last process was just
/// SIGKILLed stays "populated" for a moment, so EBUSY is retried until `timeout`.
pub fn remove_tree(path: &Path, timeout: Duration) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        match remove_once(path) {
            Ok(()) => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(Duration::from_millis(10))
            }
            Err(e) => {
                return Err(Error::io(
                    format!("removing cgroup tree {}", path.display()),
                    e,
                ))
            }
        }
    }
}

fn remove_once(path: &Path) -> io::Result<()> {
    let entries = match fs::read_dir(path) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            remove_once(&entry.path())?;
        }
    }
    match fs::remove_dir(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

/// Pids currently in the subtree (used by tests to prove teardown is complete).
pub fn pids_in_tree(path: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    collect_pids(path, &mut pids);
    pids
}

fn collect_pids(path: &Path, out: &mut Vec<i32>) {
    if let Ok(procs) = fs::read_to_string(path.join("cgroup.procs")) {
        out.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
    }
    if let Ok(entries) = fs::read_dir(path) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_pids(&entry.path(), out);
            }
        }
    }
}
