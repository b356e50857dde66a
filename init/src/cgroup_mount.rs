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

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::rootfs::{do_mount, io_err, mkdir_all, Result, RootfsError};

/// One cgroup hierarchy as the host mounts it under /sys/fs/cgroup.
#[derive(Debug, PartialEq, Eq)]
struct Hierarchy {
    /// The mount point relative to /sys/fs/cgroup ("cpu,cpuacct", "unified").
    rel: String,
    /// Its super options without rw/ro ("cpu,cpuacct", "name=systemd"); empty
    /// for cgroup2.
    opts: String,
    v2: bool,
}

/// The cgroup mounts under /sys/fs/cgroup in a mountinfo text.
fn hierarchies(mountinfo: &str) -> Vec<Hierarchy> {
    let mut out = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mut r = right.split_whitespace();
        let (fstype, super_opts) = (r.next().unwrap_or(""), r.nth(1).unwrap_or(""));
        let Some(point) = left.split_whitespace().nth(4) else {
            continue;
        };
        let Some(rel) = point.strip_prefix("/sys/fs/cgroup") else {
            continue;
        };
        let rel = rel.trim_start_matches('/').to_string();
        match fstype {
            "cgroup2" => out.push(Hierarchy {
                rel,
                opts: String::new(),
                v2: true,
            }),
            "cgroup" => {
                let opts: Vec<&str> = super_opts
                    .split(',')
                    .filter(|o| !matches!(*o, "rw" | "ro"))
                    .collect();
                out.push(Hierarchy {
                    rel,
                    opts: opts.join(","),
                    v2: false,
                });
            }
            _ => {}
        }
    }
    out
}

/// Our cgroup path in each hierarchy, from /proc/self/cgroup: keyed by the
/// controller list ("cpu,cpuacct", "name=systemd"; "" for cgroup2).
fn own_paths(proc_cgroup: &str) -> BTreeMap<String, String> {
    proc_cgroup
        .lines()
        .filter_map(|l| {
            let mut parts = l.splitn(3, ':');
            let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
            Some((ctrls.to_string(), path.to_string()))
        })
        .collect()
}

/// Our path in hierarchy `h`: the /proc/self/cgroup line whose controllers
/// are the ones the hierarchy was mounted with.
fn path_in<'a>(h: &Hierarchy, own: &'a BTreeMap<String, String>) -> Option<&'a str> {
    if h.v2 {
        return own.get("").map(String::as_str);
    }
    let mounted: Vec<&str> = h
        .opts
        .split(',')
        .filter(|o| o.starts_with("name=") || !o.contains('='))
        .collect();
    own.iter()
        .find(|(ctrls, _)| !ctrls.is_empty() && ctrls.split(',').all(|c| mounted.contains(&c)))
        .map(|(_, p)| p.as_str())
}

pub fn mount_cgroup(target: &Path, flags: MsFlags, cgroupns: bool) -> Result<()> {
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let read = |p: &str| fs::read_to_string(p).map_err(io_err("read", Path::new(p)));
    let found = hierarchies(&read("/proc/self/mountinfo")?);
    let own = own_paths(&read("/proc/self/cgroup")?);
    if found.iter().all(|h| h.v2) {
        // Without a cgroup namespace this shows the whole tree, as with runc
        // (`--cgroupns=host` users want that); a user namespace may not
        // mount it at all, and gets the host's mount bound, as runc does.
        return match mount_fresh(target, "cgroup2", flags, None) {
            Err(RootfsError::Mount {
                source: nix::Error::EPERM,
                ..
            }) if !cgroupns => bind(Path::new("/sys/fs/cgroup"), "/", target, flags),
            other => other,
        };
    }
    do_mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        Some("mode=755"),
    )?;
    for h in &found {
        let dir = target.join(&h.rel);
        mkdir_all(&dir)?;
        let (fstype, data) = if h.v2 {
            ("cgroup2", None)
        } else {
            ("cgroup", Some(h.opts.as_str()))
        };
        if cgroupns {
            mount_fresh(&dir, fstype, flags, data)?;
        } else {
            let host = Path::new("/sys/fs/cgroup").join(&h.rel);
            bind(&host, path_in(h, &own).unwrap_or("/"), &dir, flags)?;
        }
        // "cpu" → "cpu,cpuacct", as the host has them.
        if h.rel.contains(',') {
            for c in h.rel.split(',') {
                let _ = symlink(&h.rel, target.join(c));
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

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const OWN: &str = "\
12:name=systemd:/berth/web
4:memory:/berth/web
2:cpu,cpuacct:/berth/web
0::/berth/web
";

    #[test]
    fn each_hierarchy_maps_to_our_path_in_it() {
        let hs = hierarchies(HYBRID);
        assert_eq!(hs.len(), 4);
        let own = own_paths(OWN);
        for h in &hs {
            assert_eq!(path_in(h, &own), Some("/berth/web"), "{h:?}");
        }
        assert_eq!(hs[0].rel, "cpu,cpuacct");
        assert_eq!(hs[2].opts, "xattr,name=systemd");
        assert!(hs[3].v2);
    }

    #[test]
    fn a_hierarchy_we_are_not_in_has_no_path() {
        let hs = hierarchies(HYBRID);
        let own = own_paths("4:memory:/x\n");
        assert_eq!(path_in(&hs[1], &own), Some("/x"));
        assert_eq!(path_in(&hs[0], &own), None);
    }
}
