//! What an exec learns of its container before it can start the process —
//! the init's record, its cgroups, the namespaces that differ from ours, the
//! seccomp filter of its config.json and that filter compiled — none of which
//! changes while that init lives. berth-shim's exec server keeps one per
//! container (a [`Targets`]) and each shim it forks takes its copy with it,
//! instead of reading state.json, /proc/PID/cgroup, the namespace links,
//! config.json (tens of KB with a default seccomp profile) and the
//! compiled-filter cache again for every exec (a kubelet probe every few
//! seconds, a health check).
//!
//! Kept only while state.json is the same file, unchanged: a container
//! made again under the id (a restart policy, a delete and create) writes a
//! new one. What can change while it lives is read for every exec still:
//! whether the init lives (its start time, as without a cache) and whether
//! it is paused (its cgroup's freeze state).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::LinuxSeccomp;

use super::target::{cgroup_paths_of, namespaces_differing, CgroupPaths};
use crate::container::{Record, Status, STATE_FILE};
use crate::error::{Error, Result};
use crate::seccomp;

/// One container's exec target, as of `stamp`.
pub struct Prepared {
    pub(super) root: PathBuf,
    pub(super) rec: Record,
    pub(super) cgroups: CgroupPaths,
    pub(super) namespaces: Vec<(&'static str, CloneFlags)>,
    pub(super) filter: Option<LinuxSeccomp>,
    pub(super) compiled: Option<seccomp::Compiled>,
    stamp: Stamp,
}

/// Which state.json the target was read from: its inode and change time
/// (a save writes a new file and renames it over the old).
#[derive(PartialEq, Eq, Clone, Copy, Debug)]
struct Stamp {
    dev: u64,
    ino: u64,
    ctime: i64,
    ctime_nsec: i64,
}

fn stamp(root: &Path, id: &str) -> Option<Stamp> {
    let m = std::fs::metadata(crate::container::dir(root, id).join(STATE_FILE)).ok()?;
    Some(Stamp {
        dev: m.dev(),
        ino: m.ino(),
        ctime: m.ctime(),
        ctime_nsec: m.ctime_nsec(),
    })
}

impl Prepared {
    /// Read afresh: the errors an exec into this container would give
    /// (NotFound, not running, still being created, a bad config.json).
    pub fn load(root: &Path, id: &str) -> Result<Prepared> {
        let stamp = stamp(root, id);
        let rec = Record::load(root, id)?;
        let wrong = |status| Error::WrongState {
            id: id.to_string(),
            op: "exec in",
            status,
        };
        if !rec.alive() {
            return Err(wrong(Status::Stopped));
        }
        if rec.creating {
            return Err(wrong(Status::Creating));
        }
        let stamp = stamp.ok_or_else(|| Error::NotFound(id.to_string()))?;
        let filter = super::container_seccomp(&rec.bundle.join("config.json"))?;
        let compiled = seccomp::compiled_ahead(filter.as_ref(), root);
        Ok(Prepared {
            root: root.to_path_buf(),
            cgroups: cgroup_paths_of(rec.pid)?,
            namespaces: namespaces_differing(rec.pid)?,
            rec,
            filter,
            compiled,
            stamp,
        })
    }

    /// The container's init (an exec server's spare shims go with it).
    pub fn init_pid(&self) -> i32 {
        self.rec.pid
    }

    /// Whether this was read for container `id` under `root` (current or
    /// not: see [`Self::is_for`]).
    pub fn names(&self, root: &Path, id: &str) -> bool {
        self.rec.id == id && self.root == root
    }

    /// Whether this is (still) the target of an exec into `id` under `root`.
    pub fn is_for(&self, root: &Path, id: &str) -> bool {
        self.names(root, id) && stamp(root, id) == Some(self.stamp)
    }
}

/// Most containers kept at once: past that the least recently used goes
/// (its next exec reads afresh).
const MAX: usize = 128;

/// An exec server's targets, by (state root, container id).
#[derive(Default)]
pub struct Targets {
    kept: HashMap<(PathBuf, String), (Prepared, u64)>,
    uses: u64,
}

impl Targets {
    /// The target of an exec into `id`: kept and still current, or read now
    /// and kept. None when it cannot be read (the exec itself then reads it
    /// and says why it cannot run).
    pub fn get(&mut self, root: &Path, id: &str) -> Option<&Prepared> {
        self.uses += 1;
        let key = (root.to_path_buf(), id.to_string());
        let current = self.kept.get(&key).is_some_and(|(p, _)| p.is_for(root, id));
        if !current {
            self.kept.remove(&key);
            let fresh = Prepared::load(root, id).ok()?;
            if self.kept.len() >= MAX {
                let oldest = self
                    .kept
                    .iter()
                    .min_by_key(|(_, (_, used))| *used)
                    .map(|(k, _)| k.clone());
                if let Some(k) = oldest {
                    self.kept.remove(&k);
                }
            }
            self.kept.insert(key.clone(), (fresh, 0));
        }
        let uses = self.uses;
        self.kept.get_mut(&key).map(|(p, used)| {
            *used = uses;
            &*p
        })
    }
}
