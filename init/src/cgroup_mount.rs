//! `mounts[]` entries of `type: cgroup`: "the cgroup filesystem as the host
//! has it", showing the container's own cgroups.
//!
//! On a unified host that is a cgroup2 mount. On a v1 or hybrid host it is a
//! tmpfs holding one directory per hierarchy, and what goes in each depends
//! on the cgroup namespace (runc's mountCgroupV1 does the same):
//! - with one, a fresh mount of the hierarchy: the namespace makes the
//!   container's cgroup its root;
//! - without one, a bind mount of the container's cgroup directory in that
//!   hierarchy. A fresh mount would show the whole host tree (and the root's
//!   limits instead of the container's), and is refused in a user namespace.
//!
//! (A unified host without a cgroup namespace gets a fresh cgroup2 mount,
//! the whole tree, as runc gives it.)

use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::cgroups::hierarchy::{hierarchies, membership};
use crate::rootfs::{do_mount, io_err, mkdir_all, Result, RootfsError};

const ROOT: &str = "/sys/fs/cgroup";

pub fn mount_cgroup(target: &Path, flags: MsFlags, cgroupns: bool) -> Result<()> {
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let read = |p: &str| fs::read_to_string(p).map_err(io_err("read", Path::new(p)));
    // A unified host (/sys/fs/cgroup is cgroup2, runc's test too) has that
    // one hierarchy: no need to read mountinfo, which is long on a node
    // with many mounts.
    if crate::cgroups::tree::unified_host() {
        return mount_unified(target, flags, cgroupns);
    }
    // The hierarchies the host mounts under /sys/fs/cgroup, by their name there.
    let found: Vec<_> = hierarchies(&read("/proc/self/mountinfo")?)
        .into_iter()
        .filter_map(|h| {
            let rel = h
                .point
                .strip_prefix(ROOT)
                .ok()?
                .to_string_lossy()
                .into_owned();
            Some((rel, h))
        })
        .collect();
    // Our cgroup in each, for the binds (a cgroup namespace needs none).
    let own = if cgroupns {
        String::new()
    } else {
        read("/proc/self/cgroup")?
    };
    let own = membership(&own);
    if found.iter().all(|(_, h)| h.v2) {
        return mount_unified(target, flags, cgroupns);
    }
    do_mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )?;
    for (rel, h) in &found {
        let dir = target.join(rel);
        mkdir_all(&dir)?;
        let (fstype, data) = if h.v2 {
            ("cgroup2", None)
        } else {
            ("cgroup", Some(h.opts.as_str()))
        };
        if cgroupns {
            mount_fresh(&dir, fstype, flags, data)?;
        } else {
            let path = own
                .iter()
                .find(|(c, _)| h.holds(c))
                .map_or("/", |(_, p)| *p);
            bind(&h.point, path, &dir, flags)?;
        }
        // "cpu" → "cpu,cpuacct", as the host has them.
        if rel.contains(',') {
            for c in rel.split(',') {
                let _ = symlink(rel, target.join(c));
            }
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        do_mount(
            None,
            target,
            None,
            MsFlags::MS_REMOUNT | MsFlags::MS_BIND | MsFlags::MS_RDONLY,
            None,
        )?;
    }
    Ok(())
}

/// The cgroup2 tree at `target`. Without a cgroup namespace this shows the
/// whole tree, as with runc (`--cgroupns=host` users want that); a user
/// namespace may not mount it at all, and gets the host's mount bound, as
/// runc does.
fn mount_unified(target: &Path, flags: MsFlags, cgroupns: bool) -> Result<()> {
    match mount_fresh(target, "cgroup2", flags, None) {
        Err(RootfsError::Mount {
            source: nix::Error::EPERM,
            ..
        }) if !cgroupns => bind(Path::new(ROOT), "/", target, flags),
        other => other,
    }
}

fn mount_fresh(dir: &Path, fstype: &str, flags: MsFlags, data: Option<&str>) -> Result<()> {
    do_mount(Some(Path::new(fstype)), dir, Some(fstype), flags, data)
}

/// Binds `host`/`path` (our cgroup in that hierarchy) on `dir`, with the
/// entry's flags applied by a remount (a bind ignores them otherwise).
fn bind(host: &Path, path: &str, dir: &Path, flags: MsFlags) -> Result<()> {
    let src: PathBuf = host.join(path.trim_start_matches('/'));
    do_mount(Some(&src), dir, None, MsFlags::MS_BIND, None)?;
    let keep =
        flags & (MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    do_mount(
        None,
        dir,
        None,
        keep | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
        None,
    )
}
