//! Which namespaces to create (clone flags) and which to join (setns by path).

use std::fs::File;
use std::path::PathBuf;

use nix::sched::{setns, CloneFlags};
use oci_spec::runtime::{LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("joining the {kind} namespace at {path}: {source}")]
    Join {
        kind: String,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// The namespace plan of a spec.
#[derive(Debug, Clone)]
pub struct Namespaces {
    /// Created fresh by clone(2).
    pub new: CloneFlags,
    /// Joined with setns(2), user namespace first.
    pub join: Vec<(CloneFlags, PathBuf)>,
}

pub fn flag(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        // Rejected by spec validation.
        LinuxNamespaceType::Time => CloneFlags::empty(),
    }
}

impl Namespaces {
    pub fn from_spec(spec: &Spec) -> Self {
        let mut plan = Namespaces {
            new: CloneFlags::empty(),
            join: Vec::new(),
        };
        let list = spec.linux().as_ref().and_then(|l| l.namespaces().as_ref());
        for ns in list.into_iter().flatten() {
            match ns.path() {
                Some(p) => plan.join.push((flag(ns.typ()), p.clone())),
                None => plan.new |= flag(ns.typ()),
            }
        }
        // Joining a user namespace first gives the rights to join the others.
        plan.join
            .sort_by_key(|(f, _)| !f.contains(CloneFlags::CLONE_NEWUSER));
        plan
    }

    pub fn has(&self, f: CloneFlags) -> bool {
        self.new.contains(f) || self.join.iter().any(|(j, _)| j.contains(f))
    }

    /// The pid namespace to join, if any: it applies to children only, so the
    /// creator enters it around the clone instead of the init entering it.
    pub fn pid_join(&self) -> Option<&PathBuf> {
        self.join
            .iter()
            .find(|(f, _)| *f == CloneFlags::CLONE_NEWPID)
            .map(|(_, p)| p)
    }

    /// Joins every namespace given by path, except pid (see `pid_join`).
    pub fn join_all(&self) -> Result<(), NamespaceError> {
        for (f, path) in &self.join {
            if *f == CloneFlags::CLONE_NEWPID {
                continue;
            }
            let err = |source| NamespaceError::Join {
                kind: format!("{f:?}"),
                path: path.clone(),
                source,
            };
            let file = File::open(path).map_err(err)?;
            setns(&file, *f).map_err(|e| err(e.into()))?;
        }
        Ok(())
    }
}

/// fork(2) with namespace flags: clone(2) without a new stack, so the child
/// continues here like after fork. Returns 0 in the child.
///
/// # Safety
/// As fork in a multi-threaded program: the caller must be single-threaded or
/// the child must only do async-signal-safe work.
pub unsafe fn clone_fork(flags: CloneFlags) -> nix::Result<i32> {
    let rc = libc::syscall(
        libc::SYS_clone,
        (flags.bits() as libc::c_ulong) | libc::SIGCHLD as libc::c_ulong,
        0usize,
        0usize,
        0usize,
        0usize,
    );
    nix::Error::result(rc).map(|pid| pid as i32)
}
