//! fork() straight into a cgroup2 directory: clone3 with CLONE_INTO_CGROUP
//! (berth-init's exec makes its first child with it, berth-shim its monitor).
//!
//! Moving a task between cgroups (a write to cgroup.procs) takes
//! cgroup_threadgroup_rwsem for writing, which waits for an RCU grace
//! period unless another migration happened within the last one: 2–17 ms
//! on a busy 2-core host (bench/migration.py). A clone into the cgroup
//! takes it only for reading: the cost of a fork.

use std::convert::Infallible;
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

/// How much stack [`spawn_into`]'s child gets (a guard page below it):
/// berth-init's process setup needs a few pages of it; the rest is never
/// touched, so never backed.
const SPAWN_STACK: usize = 1 << 20;

/// A child that shares our memory until it execs (CLONE_VM | CLONE_VFORK,
/// as posix_spawn makes its children), started in the cgroup2 directory
/// `dir` and running `child` (which never returns: Infallible) on a stack
/// of its own; we go on once it has exec'd or exited. Returns its pid; None
/// where this cannot be (not x86_64, clone3 into `dir` refused): nothing
/// was made.
///
/// Why: a forked child copies our page tables and, on its first writes,
/// our pages, and its execve then tears that copy down again — the
/// largest part of starting an exec's process from a 7.5 MB shim.
///
/// # Safety
/// The caller must be single-threaded. `child` runs in our memory while we
/// wait: it must end in execve or `_exit`, must not drop what we own
/// (only what it made itself or took out of an Option of ours), and must
/// not wait for anything we would do meanwhile.
pub unsafe fn spawn_into(dir: &File, child: &mut dyn FnMut() -> Infallible) -> Option<i32> {
    let stack = libc::mmap(
        std::ptr::null_mut(),
        SPAWN_STACK,
        libc::PROT_READ | libc::PROT_WRITE,
        libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_STACK,
        -1,
        0,
    );
    if stack == libc::MAP_FAILED {
        return None;
    }
    // A stack overflow faults instead of writing over whatever lies below.
    let _ = libc::mprotect(stack, 4096, libc::PROT_NONE);
    let mut args = CloneArgs {
        flags: CLONE_INTO_CGROUP | libc::CLONE_VM as u64 | libc::CLONE_VFORK as u64,
        exit_signal: libc::SIGCHLD as u64,
        cgroup: dir.as_raw_fd() as u64,
        stack: stack as u64,
        stack_size: SPAWN_STACK as u64,
        ..Default::default()
    };
    let mut child = child;
    let data = &mut child as *mut &mut dyn FnMut() -> Infallible as *mut libc::c_void;
    let rc = clone3_running(&mut args, trampoline, data);
    libc::munmap(stack, SPAWN_STACK);
    (rc >= 0).then_some(rc as i32)
}

/// The child's first Rust frame: runs the closure [`spawn_into`] was given.
extern "C" fn trampoline(data: *mut libc::c_void) -> ! {
    // SAFETY: spawn_into passes a pointer to its `&mut dyn FnMut() -> Infallible`,
    // alive (in our shared memory) until this child execs or exits.
    let child = unsafe { &mut *(data as *mut &mut dyn FnMut() -> Infallible) };
    match child() {}
}

/// clone3(args) whose child calls `entry(data)` on the stack `args` names
/// (the kernel points its stack pointer there); the parent's return value.
/// In assembly because the child must not return through any frame of
/// ours: it shares our memory, so it may only write on its own stack.
#[cfg(target_arch = "x86_64")]
unsafe fn clone3_running(
    args: &mut CloneArgs,
    entry: extern "C" fn(*mut libc::c_void) -> !,
    data: *mut libc::c_void,
) -> isize {
    let rc: isize;
    std::arch::asm!(
        "syscall",
        "test rax, rax",
        "jnz 2f",
        // The child: no frame to return to; entry never returns.
        "xor ebp, ebp",
        "mov rdi, r13",
        "call r12",
        "ud2",
        "2:",
        inlateout("rax") libc::SYS_clone3 as isize => rc,
        in("rdi") args as *mut CloneArgs,
        in("rsi") std::mem::size_of::<CloneArgs>(),
        in("r12") entry,
        in("r13") data,
        lateout("rcx") _,
        lateout("r11") _,
    );
    rc
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn clone3_running(
    _args: &mut CloneArgs,
    _entry: extern "C" fn(*mut libc::c_void) -> !,
    _data: *mut libc::c_void,
) -> isize {
    -1
}
