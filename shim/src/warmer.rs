//! The exec server's migration warmer: one long-lived child, born in
//! berthd-monitors.scope, that "moves" itself to where it already is each
//! time the server pokes it.
//!
//! Why: a create's scope start ends in systemd moving the container's init
//! into it, and the first cgroup migration after a quiet spell waits for an
//! RCU grace period (cgroup_threadgroup_rwsem's writer: 2–15 ms here),
//! which every later one within a grace period is spared. So the moment a
//! create's shim exists, the warmer writes "0" to its cgroup's
//! cgroup.procs: a migration that changes nothing but starts the grace
//! period early, beside the shim's setup, instead of after it in systemd
//! (docs/performance.md "A grace period started early"; berthd-monitors.scope
//! is delegated to berth, the keeper's cgroup, not a container's).
//!
//! One process for the server's life rather than a throwaway child per
//! create: a fork and exit of the server cost 0.2–0.8 ms of CPU per create,
//! a poke a pipe write. Pokes that come while a write waits for its grace
//! period are one: the pipe holds them, the next read takes them all.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::OFlag;

pub struct Warmer {
    /// The scope it was born in (a new one means a new warmer).
    scope: PathBuf,
    /// The pipe's write end, non-blocking: a full pipe is pokes enough.
    poke: OwnedFd,
}

impl Warmer {
    /// Forks the warmer into `scope`. None where it cannot be (no clone3
    /// into the cgroup, no pipe): creates then go without.
    ///
    /// # Safety
    /// As fork: the caller must be single-threaded.
    pub unsafe fn start(scope: &Path) -> Option<Warmer> {
        let dir = crate::cgroup::open_dir(scope).ok()?;
        let procs = File::options()
            .write(true)
            .open(scope.join("cgroup.procs"))
            .ok()?;
        let (rx, tx) = nix::unistd::pipe2(OFlag::O_CLOEXEC).ok()?;
        // SAFETY: the caller is single-threaded; the child only reads,
        // writes and _exits.
        match unsafe { berth_init::clone_into::fork_into(&dir) }? {
            0 => run(rx, procs),
            _ => {
                nix::fcntl::fcntl(
                    tx.as_raw_fd(),
                    nix::fcntl::FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
                )
                .ok()?;
                Some(Warmer {
                    scope: scope.to_path_buf(),
                    poke: tx,
                })
            }
        }
    }

    pub fn scope(&self) -> &Path {
        &self.scope
    }

    /// Asks for a grace period to start; never blocks. False when the
    /// warmer is gone (its scope stopped, say): start another.
    pub fn poke(&self) -> bool {
        match nix::unistd::write(&self.poke, b"w") {
            Ok(_) | Err(nix::errno::Errno::EAGAIN) => true,
            Err(_) => false,
        }
    }
}

/// The warmer's loop: each read (of one poke or many), one write. EOF —
/// the server gone — ends it. First it keeps nothing of the server's but
/// its two fds (at 0 and 1; 2 is /dev/null): not the server's socket, not
/// the pool's namespaces, not the pipe's write end (or EOF would never come).
fn run(rx: OwnedFd, procs: File) -> ! {
    let placed =
        nix::unistd::dup2(rx.as_raw_fd(), 0).and_then(|_| nix::unistd::dup2(procs.as_raw_fd(), 1));
    // SAFETY: close_range with integer arguments; 0–2 are what the loop uses.
    let closed = unsafe { nix::libc::syscall(nix::libc::SYS_close_range, 3u32, u32::MAX, 0u32) };
    if placed.is_ok() && closed == 0 {
        let mut pokes = [0u8; 64];
        loop {
            match nix::unistd::read(0, &mut pokes) {
                Ok(0) => break,
                Ok(_) => {
                    // SAFETY: fd 1 is cgroup.procs, placed above.
                    let _ = unsafe { nix::libc::write(1, b"0".as_ptr().cast(), 1) };
                }
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => break,
            }
        }
    }
    // SAFETY: leaves without running the server's destructors.
    unsafe { nix::libc::_exit(0) }
}
