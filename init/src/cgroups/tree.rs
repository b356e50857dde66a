//! Small cgroupfs helpers both drivers use: where the trees are mounted, which
//! controllers exist, the processes in a subtree, removing a subtree.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC};

use super::{CgroupError, Result};

/// The v1 controllers berth knows; other mount options are not controllers.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "blkio",
    "pids",
    "net_cls",
    "net_prio",
    "perf_event",
    "hugetlb",
    "rdma",
    "misc",
];

fn is_cgroup2(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == CGROUP2_SUPER_MAGIC)
}

/// True when /sys/fs/cgroup itself is cgroup2 (a "unified" host).
pub fn unified_host() -> bool {
    is_cgroup2(Path::new("/sys/fs/cgroup"))
}

/// The cgroup2 tree: /sys/fs/cgroup on unified hosts, /sys/fs/cgroup/unified
/// on hybrid ones (there systemd mirrors its unit tree in it).
pub fn v2_root() -> Option<PathBuf> {
    ["/sys/fs/cgroup", "/sys/fs/cgroup/unified"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| is_cgroup2(p))
}

/// Controllers of the mounted v1 hierarchies (from /proc/self/mountinfo).
pub fn v1_controllers() -> Vec<String> {
    let mut out: Vec<String> = cgroups_rs::hierarchies::mountinfo_self()
        .into_iter()
        .filter(|m| m.fs_type.0 == "cgroup")
        .flat_map(|m| m.super_opts)
        .filter(|o| V1_CONTROLLERS.contains(&o.as_str()))
        .collect();
    out.sort();
    out.dedup();
    out
}

/// The controllers listed in `<dir>/cgroup.controllers`.
pub fn read_controllers(dir: &Path) -> Result<Vec<String>> {
    let path = dir.join("cgroup.controllers");
    let text = fs::read_to_string(&path).map_err(|e| CgroupError::io(&path, e))?;
    Ok(text.split_whitespace().map(String::from).collect())
}

pub fn write(path: &Path, value: &str) -> Result<()> {
    fs::write(path, value).map_err(|e| CgroupError::Io {
        path: path.to_path_buf(),
        source: io::Error::new(e.kind(), format!("writing {value:?}: {e}")),
    })
}

pub fn read(path: &Path) -> Result<String> {
    fs::read_to_string(path)
        .map(|s| s.trim().to_string())
        .map_err(|e| CgroupError::io(path, e))
}

/// Every pid in `dir`'s cgroup.procs and in those of all its descendants
/// (a container with cgroup namespace and delegation may make sub-cgroups).
pub fn procs_recursive(dir: &Path) -> Result<Vec<i32>> {
    let mut pids = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let procs = d.join("cgroup.procs");
        match fs::read_to_string(&procs) {
            Ok(text) => pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok())),
            // A sub-cgroup removed while we walk is not an error.
            Err(e) if e.kind() == io::ErrorKind::NotFound && d != dir => continue,
            Err(e) => return Err(CgroupError::io(&procs, e)),
        }
        let entries = match fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(CgroupError::io(&d, e)),
        };
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(entry.path());
            }
        }
    }
    pids.sort_unstable();
    pids.dedup();
    Ok(pids)
}

/// Removes `dir` and its sub-cgroups, deepest first. A cgroup whose last
/// process just died stays busy for a moment (EBUSY), so that is retried
/// until `timeout`. A missing `dir` is fine: removal is idempotent.
pub fn remove_tree(dir: &Path, timeout: Duration) -> Result<()> {
    let mut subdirs = Vec::new();
    match fs::read_dir(dir) {
        Ok(entries) => {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    subdirs.push(entry.path());
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(CgroupError::io(dir, e)),
    }
    for sub in subdirs {
        remove_tree(&sub, timeout)?;
    }
    let deadline = Instant::now() + timeout;
    loop {
        match fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && Instant::now() < deadline => {
                sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(CgroupError::io(dir, e)),
        }
    }
}

/// Polls `done` every few ms until it returns true or `timeout` passes.
pub fn wait_for(
    what: &str,
    timeout: Duration,
    mut done: impl FnMut() -> Result<bool>,
) -> Result<()> {
    let deadline = Instant::now() + timeout;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() >= deadline {
            return Err(CgroupError::Timeout {
                what: what.into(),
                waited: timeout,
            });
        }
        sleep(Duration::from_millis(2));
    }
}
