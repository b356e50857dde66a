//! fork() straight into a cgroup2 directory: clone3 with CLONE_INTO_CGROUP
//! (berth-init's exec makes its first child with it, berth-shim its monitor).
//!
//! Moving a task between cgroups (a write to cgroup.procs) takes
//! cgroup_threadgroup_rwsem for writing, which waits for an RCU grace
//! period unless another migration happened within the last one: 2–17 ms
//! on a busy 2-core host (bench/migration.py). A clone into the cgroup
//! takes it only for reading: the cost of a fork.

use std::fs::File;
use std::os::fd::AsRawFd;

/// clone3's argument (linux/sched.h, CLONE_ARGS_SIZE_VER2: up to `cgroup`).
#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// linux/sched.h; not in every libc crate version.
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// A fork whose child starts in the cgroup2 directory `dir`: 0 in the
/// child, the child's pid in the parent; None where the kernel refuses
/// (Linux < 5.7, a seccomp filter that refuses clone3, a cgroup it cannot
/// start in): nothing was made, and the caller forks as it would have.
///
/// # Safety
/// As fork: the caller must be single-threaded. clone3 is called without
/// glibc's fork handlers; the child must exec or _exit without relying on
/// them (no atfork state: the caller is single-threaded, so no lock is held).
pub unsafe fn fork_into(dir: &File) -> Option<i32> {
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        ..Default::default()
    };
    let rc = libc::syscall(
        libc::SYS_clone3,
        &mut args as *mut CloneArgs,
        std::mem::size_of::<CloneArgs>(),
    );
    (rc >= 0).then_some(rc as i32)
}
