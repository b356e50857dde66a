//! The container init: everything done inside the new namespaces, in order, up
//! to execve. Runs in the child cloned by [`crate::create`]; never returns.
//!
//! Order matters and follows runc: namespaces → (placed in the cgroup: see
//! [`PlacedGate`]) → (createRuntime hooks in the creator) → mounts →
//! createContainer hooks → pivot_root → sysctls / masked /
//! read-only paths → rlimits, oom score → bounding set → user → capabilities →
//! LookPath → Ready → exec FIFO wait → startContainer hooks → seccomp →
//! close-on-exec everything → execve.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io::Write;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxSeccomp, Process};

use crate::error::ChildFailure;
use crate::hooks::{self, Phase};
use crate::namespaces::{LateUser, Namespaces};
use crate::spec::Bundle;
use crate::sync::{Channel, PlacedGate, ToCreator, ToInit};
use crate::{capabilities, console, process, root_switch, rootfs, seccomp};

/// What the creator hands to the init (inherited through fork, not serialized).
pub struct InitContext {
    pub id: String,
    pub bundle: Bundle,
    pub namespaces: Namespaces,
    pub channel: Channel,
    pub fifo: PathBuf,
    pub console_socket: Option<OwnedFd>,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// The filter the init loads last, compiled by the creator (cached).
    pub compiled_seccomp: Option<seccomp::Compiled>,
}

/// Runs the init. On failure the error goes to whoever waits on us and the
/// init exits: the creator (sync channel) until `start` has opened the exec
/// FIFO, `start` (through the FIFO) from then on — the creator is long gone
/// by then, and a failure it cannot see would leave a start that "succeeded"
/// and a container that silently stopped.
pub fn run(mut ctx: InitContext) -> ! {
    let mut starter = None;
    let result = init(&mut ctx, &mut starter);
    let msg = match result {
        Ok(never) => match never {},
        Err(e) => e,
    };
    match starter {
        Some(mut fifo) => {
            let _ = fifo.write_all(&serde_json::to_vec(&msg).unwrap_or_default());
        }
        None => {
            let _ = ctx.channel.send(&ToCreator::Error(msg));
        }
    }
    // SAFETY: _exit skips atexit handlers and buffered I/O the creator owns.
    unsafe { libc::_exit(1) }
}

fn wait_proceed(ch: &Channel) -> Result<i32, String> {
    match ch.recv_from_creator()? {
        ToInit::Proceed { pid } => Ok(pid),
        other => Err(format!("sync channel: {other:?} where Proceed was due")),
    }
}

fn init(
    ctx: &mut InitContext,
    starter: &mut Option<std::fs::File>,
) -> Result<std::convert::Infallible, ChildFailure> {
    let spec = &ctx.bundle.spec;
    let process = spec.process().as_ref().ok_or("process: missing")?;
    // A session and process group of its own, as runc's nsexec gives every
    // container process: sharing its creator's (the shim or monitor,
    // conmon, containerd's shim) would let `kill 0` inside the container
    // signal the process that keeps its exit status.
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    // Not dumpable until execve: nothing in the container may ptrace us or open
    // /proc/<pid>/exe (the runtime binary on the host, CVE-2019-5736).
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;

    if let Some(fds) = ctx.stdio {
        crate::process::set_stdio(fds)?;
    }
    // Opened O_PATH now, while the host path is reachable and we still have
    // the creator's (host root's) credentials — so the state dir can be 0700:
    // no other user reaches the FIFO (a writer of its own would hang
    // `start`). Re-opened for writing through /proc/self/fd after
    // pivot_root, so nothing inside the container ever needs the host path.
    let fifo: OwnedFd = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_PATH | libc::O_CLOEXEC)
        .open(&ctx.fifo)
        .map_err(|e| format!("opening exec fifo {}: {e}", ctx.fifo.display()))?
        .into();
    // Every fd we inherited and do not need goes now, not only at execve:
    // until then a leaked host fd (a directory of our caller's) would be
    // reachable as /proc/self/fd/N from process.cwd, process.args[0] or a
    // hook, and lead out of the container (CVE-2024-21626).
    let mut keep = vec![ctx.channel.raw(), fifo.as_raw_fd()];
    keep.extend(ctx.console_socket.as_ref().map(|s| s.as_raw_fd()));
    keep.extend(ctx.namespaces.pooled_net);
    close_fds_except(3 + ctx.preserve_fds, &keep).map_err(|e| format!("close_range: {e}"))?;
    // The creator writes our id maps and says go; it places us in our
    // cgroup meanwhile and says so (`placed`: a new cgroup namespace is
    // unshared then, so that cgroup is the container's "/").
    let host_pid = wait_proceed(&ctx.channel)?;
    let placed = PlacedGate::new(
        &ctx.channel,
        ctx.namespaces.new.contains(CloneFlags::CLONE_NEWCGROUP),
    );
    let late_user = LateUser::open(&ctx.namespaces).map_err(|e| e.to_string())?;
    ctx.namespaces
        .join_all(late_user.is_some())
        .map_err(|e| e.to_string())?;
    if let Some(fd) = ctx.namespaces.pooled_net.take() {
        // Joined: the fd goes before anything of the container's runs.
        let _ = nix::unistd::close(fd);
    }
    let in_userns = ctx.namespaces.has(CloneFlags::CLONE_NEWUSER) && late_user.is_none();
    if in_userns {
        become_userns_root()?;
    }
    if ctx.namespaces.has(CloneFlags::CLONE_NEWUTS) {
        process::set_uts(spec).map_err(|e| e.to_string())?;
    }
    let state = |status: &str| hooks::OciState {
        oci_version: spec.version().clone(),
        id: ctx.id.clone(),
        status: status.into(),
        pid: Some(host_pid),
        bundle: ctx.bundle.dir.display().to_string(),
        annotations: spec
            .annotations()
            .iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    };
    let spec_hooks = spec.hooks().as_ref();
    if !hooks::hooks_for(spec_hooks, Phase::Prestart).is_empty()
        || !hooks::hooks_for(spec_hooks, Phase::CreateRuntime).is_empty()
    {
        placed.wait()?;
        ctx.channel
            .send(&ToCreator::RunHooks)
            .map_err(|e| format!("sync channel: {e}"))?;
        wait_proceed(&ctx.channel)?;
    }

    let mounts_ns = ctx.namespaces.has(CloneFlags::CLONE_NEWNS);
    let cwd_in_root = crate::paths::secure_join(&ctx.bundle.rootfs, process.cwd())
        .map_err(|e| format!("process.cwd: {e}"))?;
    let _ = std::fs::create_dir_all(&cwd_in_root);
    if mounts_ns {
        let idmap_userns = late_user.as_ref().map(LateUser::fd);
        rootfs::mount_all(spec, &ctx.bundle, in_userns, idmap_userns, &|| {
            placed.wait()
        })
        .map_err(|e| e.to_string())?;
    }
    // What follows runs in the container's cgroup: hooks, and the process.
    placed.wait()?;
    hooks::run(
        &hooks::hooks_for(spec_hooks, Phase::CreateContainer),
        Phase::CreateContainer,
        &state("created"),
    )
    .map_err(|e| e.to_string())?;
    // Without a /proc in the container the FIFO cannot be reopened through
    // /proc/self/fd there: keep the host's fd directory (O_PATH,
    // close-on-exec) until it is, and no longer.
    let proc_mounted = spec
        .mounts()
        .iter()
        .flatten()
        .any(|m| m.destination() == std::path::Path::new("/proc"));
    let host_fds = if mounts_ns && proc_mounted {
        None
    } else {
        Some(open_fd_dir()?)
    };
    if mounts_ns {
        root_switch::enter(&ctx.bundle.rootfs, ctx.no_pivot).map_err(|e| e.to_string())?;
        root_switch::finalize(spec).map_err(|e| e.to_string())?;
    } else {
        nix::unistd::chroot(&ctx.bundle.rootfs).map_err(|e| format!("chroot: {e}"))?;
    }
    if let Some(user) = late_user {
        user.enter().map_err(|e| e.to_string())?;
        become_userns_root()?;
    }
    if let Some(sock) = &ctx.console_socket {
        console::setup(sock, process, true).map_err(|e| e.to_string())?;
    }

    let filter = spec.linux().as_ref().and_then(|l| l.seccomp().as_ref());
    let prepared = prepare_process(
        process,
        filter,
        ctx.compiled_seccomp.take(),
        3 + ctx.preserve_fds,
        Some(&ctx.channel),
    )?;

    ctx.channel
        .send(&ToCreator::Ready)
        .map_err(|e| format!("sync channel: {e}"))?;

    // Blocks until `start` opens the FIFO for reading. Reopening the O_PATH
    // fd through /proc needs a /proc in the container; without one (a spec
    // with no mount namespace, or none mounted) the fd is reopened by its
    // number through the /proc we had before entering the root.
    let open_for_writing = || reopen_for_writing(&fifo, host_fds.as_ref());
    *starter = Some(open_for_writing()?);
    hooks::run(
        &hooks::hooks_for(spec_hooks, Phase::StartContainer),
        Phase::StartContainer,
        &state("running"),
    )
    .map_err(|e| e.to_string())?;
    // A starter that went away before reading (berthd killed inside a
    // Start) leaves no reader: EPIPE. Wait for the next one rather than
    // fail, so the container stays created and can still be started.
    while let Some(started) = starter.as_mut() {
        match started.write_all(START_BYTE) {
            Ok(()) => break,
            Err(e) if e.raw_os_error() == Some(libc::EPIPE) => {
                *starter = None;
                *starter = Some(open_for_writing()?);
            }
            Err(e) => return Err(format!("writing exec fifo: {e}").into()),
        }
    }
    drop((fifo, host_fds));
    // The FIFO stays open: execve closes it (O_CLOEXEC), and that EOF tells
    // `start` the process runs, so poststart hooks follow the exec. A failure
    // before then is written into it for `start` to report.
    exec_prepared(&prepared, filter)
}

/// Become root of the user namespace just entered (a mapped uid 0).
fn become_userns_root() -> Result<(), String> {
    nix::unistd::setresgid(0.into(), 0.into(), 0.into())
        .map_err(|e| format!("setresgid(0) in the user namespace: {e}"))?;
    nix::unistd::setresuid(0.into(), 0.into(), 0.into())
        .map_err(|e| format!("setresuid(0) in the user namespace: {e}"))
}

/// What the init writes into the exec FIFO once its startContainer hooks
/// passed. Anything else `start` reads there is a [`ChildFailure`].
pub const START_BYTE: &[u8] = b"0";

/// The host's /proc/self/fd, as an O_PATH directory fd.
fn open_fd_dir() -> Result<OwnedFd, String> {
    let flags =
        nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    let fd = nix::fcntl::open("/proc/self/fd", flags, nix::sys::stat::Mode::empty())
        .map_err(|e| format!("opening /proc/self/fd: {e}"))?;
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// Opens the exec FIFO (held as an O_PATH fd) for writing, through the
/// container's /proc or `fd_dir`; blocks until a `start` opens it for reading.
fn reopen_for_writing(fifo: &OwnedFd, fd_dir: Option<&OwnedFd>) -> Result<std::fs::File, String> {
    let flags = nix::fcntl::OFlag::O_WRONLY | nix::fcntl::OFlag::O_CLOEXEC;
    let mode = nix::sys::stat::Mode::empty();
    let n = fifo.as_raw_fd().to_string();
    let fd = match fd_dir {
        Some(dir) => nix::fcntl::openat(Some(dir.as_raw_fd()), n.as_str(), flags, mode),
        None => nix::fcntl::open(format!("/proc/self/fd/{n}").as_str(), flags, mode),
    }
    .map_err(|e| format!("opening exec fifo for writing: {e}"))?;
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { std::os::fd::FromRawFd::from_raw_fd(fd) })
}

/// A process ready to execve: credentials, capabilities and cwd applied.
pub struct Prepared {
    path: CString,
    argv: Vec<CString>,
    envp: Vec<CString>,
    program: PathBuf,
    /// seccomp is still to load (no_new_privs set: load it last).
    seccomp_pending: bool,
    /// The pending filter compiled already (seccomp::compiled: the start
    /// then waits for no compile).
    compiled: Option<seccomp::Compiled>,
}

/// Applies `process` to the calling process — rlimits, oom score, bounding
/// set, no_new_privs, user, capabilities, cwd — and resolves its program.
/// Shared by the container init and `exec`. Every fd from `keep_below` on is
/// marked close-on-exec first (no host fd survives execve: CVE-2024-21626
/// class): before any seccomp filter is loaded, as the container's profile
/// may well not allow close_range(2) — an allow-list without it would
/// otherwise stop every container before execve.
pub fn prepare_process(
    process: &Process,
    filter: Option<&LinuxSeccomp>,
    compiled_ahead: Option<seccomp::Compiled>,
    keep_below: u32,
    hand_over: Option<&Channel>,
) -> Result<Prepared, ChildFailure> {
    close_range_cloexec(keep_below).map_err(|e| format!("close_range: {e}"))?;
    process::set_rlimits(process).map_err(|e| e.to_string())?;
    process::set_oom_score(process).map_err(|e| e.to_string())?;
    // Borrowed: a copy of the five sets cost ~20 µs of an exec.
    let default_caps;
    let caps = match process.capabilities() {
        Some(c) => c,
        None => {
            default_caps = oci_spec::runtime::LinuxCapabilities::default();
            &default_caps
        }
    };
    capabilities::drop_bounding(caps).map_err(|e| e.to_string())?;
    process::set_no_new_privs(process).map_err(|e| e.to_string())?;
    // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN, which the
    // user switch may drop: load it now. With it, load it last (fewer syscalls
    // of ours run under the container's filter).
    let nnp = process.no_new_privileges().unwrap_or(false);
    if let (Some(f), false) = (filter, nnp) {
        match &compiled_ahead {
            Some(c) => c.load(),
            None => seccomp::load_handing_over(f, hand_over),
        }
        .map_err(|e| e.to_string())?;
    }
    // While still root: the labels take effect at execve.
    crate::lsm::set_exec_labels(process)?;
    capabilities::prepare_for_setuid().map_err(|e| e.to_string())?;
    process::switch_user(process).map_err(|e| e.to_string())?;
    capabilities::apply_sets(caps).map_err(|e| e.to_string())?;
    process::enter_cwd(process).map_err(|e| e.to_string())?;

    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    let first = args.first().ok_or("process.args: empty")?;
    let program = crate::paths::look_path(first, &env).map_err(ChildFailure::NotExecutable)?;
    // A listener fd must reach the creator while it still listens (before
    // Ready): a notifying filter is loaded here, as runc loads every filter.
    let notifies = filter.is_some_and(seccomp::notifies);
    let seccomp_pending = filter.is_some() && nnp && !notifies;
    let compiled = match (filter, compiled_ahead) {
        (Some(_), Some(c)) if seccomp_pending => Some(c),
        (Some(f), None) if seccomp_pending => seccomp::compile(f).map_err(|e| e.to_string())?,
        _ => None,
    };
    let prepared = Prepared {
        path: CString::new(program.as_os_str().as_encoded_bytes())
            .map_err(|_| "process.args[0] contains NUL")?,
        argv: cstrings(&args)?,
        envp: cstrings(&env)?,
        program,
        seccomp_pending,
        compiled,
    };
    if let (Some(f), true) = (filter, nnp && notifies) {
        seccomp::load_handing_over(f, hand_over).map_err(|e| e.to_string())?;
    }
    Ok(prepared)
}

/// The last steps: seccomp (if still pending), execve. Nothing but execve
/// runs under a filter loaded here.
pub fn exec_prepared(
    p: &Prepared,
    filter: Option<&LinuxSeccomp>,
) -> Result<std::convert::Infallible, ChildFailure> {
    match (&p.compiled, filter) {
        (Some(c), _) => c.load().map_err(|e| e.to_string())?,
        (None, Some(f)) if p.seccomp_pending => {
            seccomp::load_handing_over(f, None).map_err(|e| e.to_string())?
        }
        _ => {}
    }
    let err = nix::unistd::execve(&p.path, &p.argv, &p.envp).unwrap_err();
    let why = crate::paths::errno_text(&std::io::Error::from_raw_os_error(err as i32));
    let msg = format!("exec {}: {why}", p.program.display());
    // Gone or changed since look_path found it.
    Err(match err {
        nix::errno::Errno::ENOENT | nix::errno::Errno::EACCES => ChildFailure::NotExecutable(msg),
        _ => ChildFailure::Setup(msg),
    })
}

fn cstrings(list: &[String]) -> Result<Vec<CString>, String> {
    list.iter()
        .map(|s| CString::new(s.as_bytes()).map_err(|_| format!("{s:?} contains NUL")))
        .collect()
}

/// Closes every fd from `first` on, except those in `keep`.
pub fn close_fds_except(first: u32, keep: &[std::os::fd::RawFd]) -> nix::Result<()> {
    let close = |from: u32, to: u32| {
        // SAFETY: plain syscall with integer arguments; the fds closed are
        // ones nothing in this process uses any more.
        let rc = unsafe { libc::syscall(libc::SYS_close_range, from, to, 0) };
        nix::Error::result(rc).map(|_| ())
    };
    let mut keep: Vec<u32> = keep
        .iter()
        .filter_map(|&k| u32::try_from(k).ok())
        .filter(|&k| k >= first)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    let mut from = first;
    for k in keep {
        if k > from {
            close(from, k - 1)?;
        }
        from = k + 1;
    }
    close(from, u32::MAX)
}

/// Marks every fd from `first` on close-on-exec (close_range(2) with
/// CLOSE_RANGE_CLOEXEC, kernel ≥ 5.11), so execve drops them all.
pub fn close_range_cloexec(first: u32) -> nix::Result<()> {
    const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
    // SAFETY: plain syscall with integer arguments.
    let rc = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, CLOSE_RANGE_CLOEXEC) };
    nix::Error::result(rc).map(|_| ())
}
