//! A pod's user namespace (CRI UserNamespace mode POD), pinned like its other
//! namespaces: a short-lived child makes the user namespace, we write its
//! one uid and one gid mapping, the child then makes the network, IPC and
//! UTS namespaces — so they belong to the pod's user namespace and the
//! containers' root (root only inside it) has its rights over them — and
//! sets the hostname; we bind-mount its /proc/PID/ns/{user,net,ipc,uts}
//! onto the pod's files and let it exit. Containers join them by path.
//!
//! A thread cannot do this (setns/unshare of a user namespace needs a
//! single-threaded process), hence fork: the child only makes raw,
//! async-signal-safe system calls (berth-cri has other threads).

use std::ffi::CString;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::mount::{mount, MsFlags};
use nix::sys::signal::{kill, Signal};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, pipe2, ForkResult, Pid};

/// One id mapping: (id in the pod, id on the host, length).
pub type IdMap = (u32, u32, u32);

#[derive(Debug, thiserror::Error)]
pub enum UsernsError {
    #[error("the pod's user namespace: {what}: {source}")]
    Sys {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("the pod's user namespace: its helper process failed at step {0}")]
    Child(i32),
}

fn sys(what: &'static str) -> impl FnOnce(std::io::Error) -> UsernsError {
    move |source| UsernsError::Sys { what, source }
}

/// The namespaces pinned here, in `dir`.
pub const FILES: [&str; 4] = ["user", "net", "ipc", "uts"];

/// Pins the pod's user, net, ipc and uts namespaces at `dir`/{user,…}.
/// Already pinned (a retry): nothing to do.
pub fn pin(dir: &Path, uid: IdMap, gid: IdMap, hostname: &str) -> Result<(), UsernsError> {
    if berth_net::netns::is_pinned(&dir.join("user")) {
        return Ok(());
    }
    let host = CString::new(hostname).map_err(|e| sys("hostname")(e.into()))?;
    let (to_child_r, to_child_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe")(e.into()))?;
    let (to_us_r, to_us_w) =
        pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| sys("pipe")(e.into()))?;
    // SAFETY: the child makes only async-signal-safe system calls (no
    // allocation, no locks) and leaves with _exit.
    match unsafe { fork() }.map_err(|e| sys("fork")(e.into()))? {
        ForkResult::Child => {
            drop((to_child_w, to_us_r));
            let code = child(&to_child_r, &to_us_w, &host);
            // SAFETY: _exit skips everything the parent's runtime owns.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop((to_child_r, to_us_w));
            let mut ours = Parent {
                pid: child,
                go: File::from(to_child_w),
                from: File::from(to_us_r),
            };
            let r = ours.pin(dir, uid, gid);
            if r.is_err() {
                let _ = kill(child, Signal::SIGKILL);
            }
            match (r, waitpid(child, None)) {
                // Its exit code says which step failed.
                (Err(UsernsError::Child(_)), Ok(WaitStatus::Exited(_, n))) => {
                    Err(UsernsError::Child(n))
                }
                (Err(e), _) => Err(e),
                (Ok(()), Ok(WaitStatus::Exited(_, 0))) => Ok(()),
                (Ok(()), Ok(WaitStatus::Exited(_, n))) => Err(UsernsError::Child(n)),
                (Ok(()), _) => Err(UsernsError::Child(-1)),
            }
        }
    }
}

/// The child's part. Returns its exit code: the step that failed, or 0.
fn child(go: &OwnedFd, to_us: &OwnedFd, hostname: &CString) -> i32 {
    use std::os::fd::AsRawFd;
    let say = |b: u8| unsafe { libc::write(to_us.as_raw_fd(), [b].as_ptr().cast(), 1) } == 1;
    let wait = || {
        let mut b = [0u8; 1];
        unsafe { libc::read(go.as_raw_fd(), b.as_mut_ptr().cast(), 1) == 1 }
    };
    // SAFETY (all the calls below): plain system calls on live fds and a
    // live C string.
    if unsafe { libc::unshare(libc::CLONE_NEWUSER) } != 0 {
        return 1;
    }
    if !say(b'u') || !wait() {
        return 2;
    }
    // Root of the new namespace now that it is mapped; what it makes next
    // belongs to it.
    let others = libc::CLONE_NEWNET | libc::CLONE_NEWIPC | libc::CLONE_NEWUTS;
    if unsafe { libc::unshare(others) } != 0 {
        return 3;
    }
    let len = hostname.as_bytes().len();
    if len > 0 && unsafe { libc::sethostname(hostname.as_ptr(), len) } != 0 {
        return 4;
    }
    if !say(b'n') || !wait() {
        return 5;
    }
    0
}

struct Parent {
    pid: Pid,
    go: File,
    from: File,
}

impl Parent {
    fn expect(&mut self, want: u8) -> Result<(), UsernsError> {
        let mut b = [0u8; 1];
        match self.from.read(&mut b) {
            Ok(1) if b[0] == want => Ok(()),
            // EOF: the child failed; its exit code says where.
            Ok(_) => Err(UsernsError::Child(0)),
            Err(e) => Err(sys("reading from the helper")(e)),
        }
    }

    fn go(&mut self) -> Result<(), UsernsError> {
        self.go
            .write_all(b"g")
            .map_err(sys("writing to the helper"))
    }

    fn pin(&mut self, dir: &Path, uid: IdMap, gid: IdMap) -> Result<(), UsernsError> {
        self.expect(b'u')?;
        for (file, (inside, host, len)) in [("uid_map", uid), ("gid_map", gid)] {
            let path = format!("/proc/{}/{file}", self.pid);
            std::fs::write(&path, format!("{inside} {host} {len}\n"))
                .map_err(sys("writing the id mapping"))?;
        }
        self.go()?;
        self.expect(b'n')?;
        for what in FILES {
            let path = dir.join(what);
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o444)
                .open(&path)
                .map_err(sys("creating a namespace file"))?;
            let ns = format!("/proc/{}/ns/{what}", self.pid);
            mount(
                Some(ns.as_str()),
                &path,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| sys("bind-mounting a namespace")(e.into()))?;
        }
        self.go()
    }
}
