//! Which namespaces to create (clone flags) and which to join (setns by path).

use std::fs::File;
use std::os::fd::{BorrowedFd, RawFd};
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
    /// A network namespace made ahead by berthd's exec server (an fd the
    /// init inherits), joined in place of a new one: see
    /// [`Namespaces::use_pooled_net`].
    pub pooled_net: Option<RawFd>,
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
            pooled_net: None,
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
        self.new.contains(f)
            || self.join.iter().any(|(j, _)| j.contains(f))
            || (f == CloneFlags::CLONE_NEWNET && self.pooled_net.is_some())
    }

    /// Takes `fd`, a fresh network namespace made ahead (nothing in it but
    /// a loopback that is down: what clone(2) would make), in place of the
    /// new one the spec asks for; setting one up is ~0.5 ms of the clone
    /// (docs/performance.md "Network namespaces made ahead"). Only where
    /// the result is the same: a new network namespace, and no user
    /// namespace, which would have to own it (a pooled one belongs to the
    /// host's, and the container's root would get no rights over it).
    /// Whether it was taken.
    pub fn use_pooled_net(&mut self, fd: RawFd) -> bool {
        let usable = self.new.contains(CloneFlags::CLONE_NEWNET)
            && !self.has(CloneFlags::CLONE_NEWUSER)
            && self.pooled_net.is_none();
        if usable {
            self.new.remove(CloneFlags::CLONE_NEWNET);
            self.pooled_net = Some(fd);
        }
        usable
    }

    /// The pid namespace to join, if any: it applies to children only, so the
    /// creator enters it around the clone instead of the init entering it.
    pub fn pid_join(&self) -> Option<&PathBuf> {
        self.join
            .iter()
            .find(|(f, _)| *f == CloneFlags::CLONE_NEWPID)
            .map(|(_, p)| p)
    }

    /// The user namespace to join by path, if any.
    pub fn user_join(&self) -> Option<&PathBuf> {
        self.join
            .iter()
            .find(|(f, _)| *f == CloneFlags::CLONE_NEWUSER)
            .map(|(_, p)| p)
    }

    /// Joins every namespace given by path, except pid (see `pid_join`) and,
    /// with `late_user`, the user namespace (see [`LateUser`]).
    pub fn join_all(&self, late_user: bool) -> Result<(), NamespaceError> {
        for (f, path) in &self.join {
            if *f == CloneFlags::CLONE_NEWPID || (late_user && *f == CloneFlags::CLONE_NEWUSER) {
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
        if let Some(fd) = self.pooled_net {
            // SAFETY: the fd was inherited for this and stays open until the
            // caller closes it after this join.
            let file = unsafe { BorrowedFd::borrow_raw(fd) };
            setns(file, CloneFlags::CLONE_NEWNET).map_err(|e| NamespaceError::Join {
                kind: "pooled network".into(),
                path: PathBuf::from(format!("fd {fd}")),
                source: e.into(),
            })?;
        }
        Ok(())
    }
}

/// A user namespace joined by path, entered only after the rootfs is set up
/// (a pod's, berth-cri's POD mode). Until then the init stays the host's
/// root, which is what idmapped mounts need (CAP_SYS_ADMIN over the
/// filesystems) and what lets it mount at all: its new mount namespace
/// belongs to the host's user namespace, so it keeps the rights over it
/// that the container's root never gets. The namespaces the pod pinned
/// (net, ipc, uts) belong to the pod's user namespace, so the container's
/// root has its rights over those.
pub struct LateUser {
    path: PathBuf,
    file: File,
}

impl LateUser {
    /// Opens the namespace now, while its host path is reachable; only a
    /// caller that is root may defer (a rootless one needs the join first
    /// to have any rights in the other namespaces).
    pub fn open(ns: &Namespaces) -> Result<Option<LateUser>, NamespaceError> {
        let Some(path) = ns.user_join() else {
            return Ok(None);
        };
        if !nix::unistd::geteuid().is_root() {
            return Ok(None);
        }
        let file = File::open(path).map_err(|source| NamespaceError::Join {
            kind: "user".into(),
            path: path.clone(),
            source,
        })?;
        Ok(Some(LateUser {
            path: path.clone(),
            file,
        }))
    }

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.file)
    }

    /// Enters the namespace (the caller then becomes its root).
    pub fn enter(self) -> Result<(), NamespaceError> {
        setns(&self.file, CloneFlags::CLONE_NEWUSER).map_err(|e| NamespaceError::Join {
            kind: "user".into(),
            path: self.path,
            source: e.into(),
        })
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

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{LinuxBuilder, LinuxNamespaceBuilder, SpecBuilder};

    fn plan(types: &[(LinuxNamespaceType, Option<&str>)]) -> Namespaces {
        let list = types
            .iter()
            .map(|(t, p)| {
                let mut b = LinuxNamespaceBuilder::default().typ(*t);
                if let Some(p) = p {
                    b = b.path(PathBuf::from(p));
                }
                b.build().unwrap()
            })
            .collect::<Vec<_>>();
        let linux = LinuxBuilder::default().namespaces(list).build().unwrap();
        Namespaces::from_spec(&SpecBuilder::default().linux(linux).build().unwrap())
    }

    #[test]
    fn pooled_net_only_in_place_of_a_new_one_without_a_user_namespace() {
        use LinuxNamespaceType::*;
        let mut p = plan(&[(Pid, None), (Network, None), (Mount, None)]);
        assert!(p.use_pooled_net(7));
        assert!(!p.new.contains(CloneFlags::CLONE_NEWNET));
        assert!(p.has(CloneFlags::CLONE_NEWNET), "still its own netns");
        assert_eq!(p.pooled_net, Some(7));
        assert!(!p.use_pooled_net(8), "one only");
        // Host networking, a joined netns (a pod's), a user namespace new or
        // joined: the plan stays as the spec says.
        for kinds in [
            vec![(Pid, None), (Mount, None)],
            vec![(Network, Some("/proc/1/ns/net")), (Mount, None)],
            vec![(User, None), (Network, None)],
            vec![(User, Some("/proc/1/ns/user")), (Network, None)],
        ] {
            let mut p = plan(&kinds);
            let before = p.new;
            assert!(!p.use_pooled_net(7), "{kinds:?}");
            assert_eq!((p.new, p.pooled_net), (before, None), "{kinds:?}");
        }
    }
}
