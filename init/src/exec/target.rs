//! What an exec joins: the container init's namespaces and cgroups, found
//! through /proc (and our mountinfo where cgroup2 is not at /sys/fs/cgroup):
//! no bus, no state of ours.

use std::fs::{self, File};
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;

use crate::cgroups::hierarchy;
use crate::error::{Error, Result};

/// The namespaces an exec joins, user first (it grants the right to join
/// the others; root joins it last, see below) and mount last of the rest
/// (after it, host paths are gone).
const ORDER: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// The container's namespaces that differ from ours, in join order. They
/// stay so for the init's life (a namespace of a process never changes,
/// nor do ours): an exec server keeps them (prepared.rs).
pub(super) fn namespaces_differing(pid: i32) -> Result<Vec<(&'static str, CloneFlags)>> {
    use nix::fcntl::readlinkat;
    let (theirs, ours) = (
        ns_dir(&format!("/proc/{pid}/ns"))?,
        ns_dir("/proc/self/ns")?,
    );
    let mut out = Vec::new();
    for (name, flag) in ORDER {
        // The link's text names the namespace ("net:[4026531840]"): read
        // for a third of what a stat of it costs (which resolves the link
        // to the namespace's inode).
        let link = |d: &File| readlinkat(Some(d.as_raw_fd()), *name);
        let (Ok(t), Ok(o)) = (link(&theirs), link(&ours)) else {
            continue;
        };
        if t != o {
            out.push((*name, *flag));
        }
    }
    // Root joins the user namespace last instead: a container whose mount
    // namespace belongs to the host's user namespace (a pod's late-joined
    // one, see namespaces::LateUser) can only be entered with the host's
    // rights, and root needs no user namespace's to enter the others.
    if nix::unistd::geteuid().is_root() {
        out.sort_by_key(|(_, f)| *f == CloneFlags::CLONE_NEWUSER);
    }
    Ok(out)
}

/// Those namespaces of `pid` opened now (while the host's /proc is ours),
/// each name looked up in its ns directory, opened once: a full path walks
/// /proc and the pid again for every file.
pub(super) fn open_namespaces(
    pid: i32,
    which: &[(&'static str, CloneFlags)],
) -> Result<Vec<(CloneFlags, File)>> {
    use nix::fcntl::{openat, OFlag};
    use nix::sys::stat::Mode;
    let theirs = ns_dir(&format!("/proc/{pid}/ns"))?;
    let mut out = Vec::with_capacity(which.len());
    for (name, flag) in which {
        let f = openat(
            Some(theirs.as_raw_fd()),
            *name,
            OFlag::O_RDONLY | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| Error::io(format!("opening /proc/{pid}/ns/{name}"), e))?;
        // SAFETY: openat just returned this fd; it is ours alone.
        out.push((*flag, unsafe { File::from_raw_fd(f) }));
    }
    Ok(out)
}

fn ns_dir(path: &str) -> Result<File> {
    File::options()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC)
        .open(path)
        .map_err(|e| Error::io(format!("opening {path}"), e))
}

/// The cgroups of the container's init, in every hierarchy, so the exec'd
/// process is accounted, limited and frozen with the container.
pub(super) struct Cgroups {
    /// Its cgroup2 directory, opened (the clone target), and its cgroup.procs.
    pub(super) v2_dir: Option<File>,
    pub(super) v2_procs: Option<PathBuf>,
    /// Its cgroup.procs in each v1 hierarchy (hybrid and legacy hosts).
    pub(super) v1_procs: Vec<PathBuf>,
}

impl Cgroups {
    /// The cgroup.procs files still to write: all but the cgroup2 one when
    /// the first child started there.
    pub(super) fn procs_files(&self, in_v2: bool) -> Vec<&Path> {
        let v2 = self.v2_procs.as_deref().filter(|_| !in_v2);
        v2.into_iter()
            .chain(self.v1_procs.iter().map(PathBuf::as_path))
            .collect()
    }

    /// Paused (or being paused): cgroup.freeze asked for or cgroup.events
    /// reporting frozen (a frozen ancestor: the init in a sub-cgroup of its
    /// scope), or a v1 freezer not THAWED.
    pub(super) fn frozen(&self) -> bool {
        // Read through the directory opened already: no walk of the
        // cgroup's path for each file.
        let read = |name: &str| -> Option<String> {
            use std::io::Read;
            let dir = self.v2_dir.as_ref()?;
            let fd = nix::fcntl::openat(
                Some(dir.as_raw_fd()),
                name,
                nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .ok()?;
            let mut text = String::with_capacity(256);
            // SAFETY: openat just returned this fd; it is ours alone.
            unsafe { File::from_raw_fd(fd) }
                .read_to_string(&mut text)
                .ok()?;
            Some(text)
        };
        let v2 = read("cgroup.freeze").is_some_and(|t| t.trim() == "1")
            || read("cgroup.events").is_some_and(|t| t.lines().any(|l| l.trim() == "frozen 1"));
        v2 || self.v1_procs.iter().any(|procs| {
            procs.parent().is_some_and(|d| {
                fs::read_to_string(d.join("freezer.state"))
                    .is_ok_and(|t| matches!(t.trim(), "FROZEN" | "FREEZING"))
            })
        })
    }
}

/// Where the init's cgroups are: fixed for its life (berth never moves an
/// init), so an exec server keeps them (prepared.rs).
#[derive(Clone, Debug, Default)]
pub(super) struct CgroupPaths {
    /// Its cgroup2 directory.
    v2: Option<PathBuf>,
    /// Its cgroup.procs in each v1 hierarchy (hybrid and legacy hosts).
    v1_procs: Vec<PathBuf>,
}

impl CgroupPaths {
    /// The cgroup2 directory opened (the clone target; not openable: it went
    /// away meanwhile, and the write to its cgroup.procs will say so).
    pub(super) fn open(&self) -> Cgroups {
        let v2_dir = self.v2.as_ref().and_then(|dir| {
            File::options()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(dir)
                .ok()
        });
        Cgroups {
            v2_dir,
            v2_procs: self.v2.as_ref().map(|d| d.join("cgroup.procs")),
            v1_procs: self.v1_procs.clone(),
        }
    }
}

/// The cgroups `pid` is in, found through /proc/PID/cgroup and, unless
/// cgroup2 is at /sys/fs/cgroup, our mountinfo.
pub(super) fn cgroup_paths_of(pid: i32) -> Result<CgroupPaths> {
    let text = crate::container::read_proc(&format!("/proc/{pid}/cgroup"))
        .map_err(|e| Error::io(format!("reading /proc/{pid}/cgroup"), e))?;
    let membership = hierarchy::membership(&text);
    let hierarchies = match crate::cgroups::tree::unified_host() {
        // cgroup2 at /sys/fs/cgroup: its line is the one that counts, as
        // for runc on such a host (a v1 line there names a hierarchy
        // mounted, if at all, outside the cgroup tree: skipped below), and
        // our mountinfo need not be read and parsed (~0.1 ms of an exec).
        true => {
            vec![hierarchy::Hierarchy {
                point: PathBuf::from("/sys/fs/cgroup"),
                opts: String::new(),
                v2: true,
            }]
        }
        false => {
            let mounts = fs::read_to_string("/proc/self/mountinfo")
                .map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
            hierarchy::hierarchies(&mounts)
        }
    };
    let mut out = CgroupPaths::default();
    for (ctrls, path) in membership {
        let Some(mount) = hierarchies
            .iter()
            .find(|h| h.holds(ctrls))
            .map(|h| &h.point)
        else {
            continue;
        };
        let dir = mount.join(path.trim_start_matches('/'));
        let procs = dir.join("cgroup.procs");
        if !procs.exists() {
            continue;
        }
        if ctrls.is_empty() {
            out.v2 = Some(dir);
        } else {
            out.v1_procs.push(procs);
        }
    }
    Ok(out)
}
