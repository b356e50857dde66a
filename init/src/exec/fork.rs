//! How an exec's process is made. Where the kernel allows, directly
//! ([`clone_direct`]): the caller's next child is set to be born in the
//! container's pid namespace, and the process is cloned straight into its
//! cgroup2 directory and joins the other namespaces itself. Otherwise (a
//! paused container, no clone3 into the cgroup) through a first child,
//! forked (into the cgroup where it can be), that joins the cgroups and
//! namespaces, then clones the process as the caller's child.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::Path;

use nix::sched::{setns, CloneFlags};
use nix::unistd::{fork, ForkResult};

use crate::error::{Error, Result};
use crate::namespaces::clone_fork;

/// fork(), non-dumpable, and where it can be, straight into the cgroup2
/// directory `v2`: returns (0 in the child | the child's pid, whether the
/// child started in `v2`).
///
/// Why not fork and write cgroup.procs: moving a task between cgroups takes
/// cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period
/// (2–15 ms on a busy 2-core host, the largest item of an exec); a clone
/// into the cgroup only takes it for reading. Where clone3 or
/// CLONE_INTO_CGROUP is missing (Linux < 5.7, a seccomp filter that refuses
/// clone3) or refused for this cgroup, a plain fork is made and the child
/// writes cgroup.procs as before.
///
/// The child is non-dumpable from its first instruction (the flag is
/// inherited at fork, so ours is dropped around the clone and put back),
/// because it is in the container's cgroup from then on.
///
/// # Safety
/// As fork: the caller must be single-threaded. clone3 is called without
/// glibc's fork handlers, as clone_fork is; the child only runs this
/// module's code before it execs or _exits.
pub(super) unsafe fn fork_into(v2: Option<&File>) -> Result<(i32, bool)> {
    let dumpable = nix::sys::prctl::get_dumpable().unwrap_or(true);
    nix::sys::prctl::set_dumpable(false).map_err(|e| Error::io("prctl(PR_SET_DUMPABLE)", e))?;
    let forked = (|| {
        if let Some(dir) = v2 {
            if let Some(pid) = crate::clone_into::fork_into(dir) {
                return Ok((pid, true));
            }
        }
        match fork().map_err(|e| Error::io("fork", e))? {
            ForkResult::Child => Ok((0, false)),
            ForkResult::Parent { child } => Ok((child.as_raw(), false)),
        }
    })();
    if !matches!(forked, Ok((0, _))) && dumpable {
        let _ = nix::sys::prctl::set_dumpable(true);
    }
    forked
}

/// The process, cloned by the caller itself, straight into the cgroup2
/// directory `v2` and the pid namespace of `namespaces` (if any): Some(0)
/// in the process, Some(its pid) in the caller, None where clone3 into `v2`
/// is refused (nothing was made; the caller takes the first child's way).
/// One fork fewer than [`fork_into`] + [`join_and_clone`]: setns of a pid
/// namespace changes only where the caller's children are born, so the
/// caller enters it for the one clone and goes back to its own after. The
/// process joins the rest with [`join_in_place`].
///
/// Non-dumpable from its first instruction, as [`fork_into`]'s child.
///
/// `spawn` makes the process in `v2`: a fork (returning 0 in the child,
/// clone_into::fork_into) or a child that runs a closure in our memory
/// until it execs (clone_into::spawn_into).
///
/// # Safety
/// As [`fork_into`], and as `spawn` asks.
pub(super) unsafe fn clone_direct(
    v2: &File,
    namespaces: &[(CloneFlags, File)],
    spawn: impl FnOnce(&File) -> Option<i32>,
) -> Result<Option<i32>> {
    let pid_ns = namespaces
        .iter()
        .find(|(f, _)| *f == CloneFlags::CLONE_NEWPID);
    let ours = match pid_ns {
        Some((flag, theirs)) => {
            let ours = File::open("/proc/self/ns/pid")
                .map_err(|e| Error::io("opening /proc/self/ns/pid", e))?;
            setns(theirs, *flag).map_err(|e| Error::io("setns(CLONE_NEWPID)", e))?;
            Some(ours)
        }
        None => None,
    };
    let dumpable = nix::sys::prctl::get_dumpable().unwrap_or(true);
    let cloned = match nix::sys::prctl::set_dumpable(false) {
        Ok(()) => spawn(v2),
        Err(_) => None,
    };
    if cloned == Some(0) {
        return Ok(cloned);
    }
    if dumpable {
        let _ = nix::sys::prctl::set_dumpable(true);
    }
    // Back to our own pid namespace (always allowed: it is our active one),
    // so nothing else we fork lands in the container's.
    let back = match &ours {
        Some(f) => setns(f, CloneFlags::CLONE_NEWPID).map_err(|e| Error::io("setns back", e)),
        None => Ok(()),
    };
    if let (Err(e), Some(pid)) = (&back, cloned) {
        let pid = nix::unistd::Pid::from_raw(pid);
        let _ = nix::sys::signal::kill(pid, nix::sys::signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(pid, None);
        return Err(Error::Init(format!("exec: {e}")));
    }
    back.map(|()| cloned)
}

/// In the process cloned by [`clone_direct`]: joins the cgroups it did not
/// start in (v1 hierarchies) and every namespace but the pid one (it was
/// born there), in `namespaces`' order.
pub(super) fn join_in_place(
    namespaces: &[(CloneFlags, File)],
    cgroups: &[&Path],
) -> std::result::Result<(), String> {
    for procs in cgroups {
        fs::write(procs, "0").map_err(|e| format!("joining cgroup {}: {e}", procs.display()))?;
    }
    let others = namespaces
        .iter()
        .filter(|(f, _)| *f != CloneFlags::CLONE_NEWPID);
    join_namespaces(others)
}

fn join_namespaces<'a>(
    namespaces: impl IntoIterator<Item = &'a (CloneFlags, File)>,
) -> std::result::Result<(), String> {
    for (flag, file) in namespaces {
        setns(file, *flag).map_err(|e| format!("setns({flag:?}): {e}"))?;
    }
    Ok(())
}

/// In the first child: join cgroups (those it did not start in) and
/// namespaces, then clone the process as a sibling (CLONE_PARENT). Returns
/// 0 in the process, its pid in the child.
/// With `late`, the cgroups are joined by the process, not the first child:
/// their files are opened now (the host's, before setns) and the process's
/// pid written into them after the clone.
pub(super) fn join_and_clone(
    namespaces: &[(CloneFlags, File)],
    cgroups: &[&Path],
    late: bool,
) -> std::result::Result<i32, String> {
    // Non-dumpable before anything joins the container, so the process
    // cloned below is never, even for an instant, a runtime binary in the
    // container that its processes could ptrace or open through
    // /proc/<pid>/exe (CVE-2019-5736, CVE-2016-9962); the flag is inherited.
    // (fork_into made it so already; this keeps it so whatever the caller.)
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    let join_err = |p: &Path, e| format!("joining cgroup {}: {e}", p.display());
    let mut later = Vec::new();
    for procs in cgroups {
        if late {
            let f = fs::OpenOptions::new().write(true).open(procs);
            later.push((*procs, f.map_err(|e| join_err(procs, e))?));
        } else {
            fs::write(procs, "0").map_err(|e| join_err(procs, e))?;
        }
    }
    join_namespaces(namespaces)?;
    // A late joiner waits until it is in the (frozen) cgroups: without this
    // it could run, even exec, before we write its pid.
    let go = if late {
        Some(nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| format!("pipe2: {e}"))?)
    } else {
        None
    };
    // SAFETY: the first child is single-threaded.
    let pid = unsafe { clone_fork(CloneFlags::CLONE_PARENT) }.map_err(|e| format!("clone: {e}"))?;
    if pid == 0 {
        if let Some((r, w)) = go {
            drop(w);
            // EOF (the first child wrote the pid and exited, or died) is the
            // signal either way.
            let _ = File::from(r).read(&mut [0u8; 1]);
        }
    } else {
        // Our pid namespace is still the caller's: the pid means the same
        // to the cgroup files.
        for (procs, mut f) in later {
            f.write_all(pid.to_string().as_bytes())
                .map_err(|e| join_err(procs, e))?;
        }
        drop(go);
    }
    Ok(pid)
}
