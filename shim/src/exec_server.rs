//! `berth-shim --exec-server`: berthd's shim factory. One long-lived,
//! single-threaded berth-shim per berthd that forks a shim per exec (and
//! per create) on request, so neither starts this 7.5 MB binary (ld.so,
//! glibc's cpuid probing, relocations, clap: ~1.1 ms of a ~6 ms exec) and
//! no parent process has to be scheduled to pass the report on
//! (docs/performance.md "Exec path profile").
//!
//! Protocol (fd 3, a SOCK_SEQPACKET socket from berthd): one message per
//! shim, its bytes a JSON array of the berth-shim arguments berthd would
//! have run the shim with, its SCM_RIGHTS the caller's stdio fds in the
//! order of the `--caller-*` flags (an exec's), then the shim's end of a
//! socketpair for the report. The forked child is then exactly a berth-shim
//! after its detach: it reports one `ShimReport` line on that socket (a
//! create's asks berthd for its scope there first: cgroups::placed; a quick
//! exec's exit record follows as a second line) and re-executes into
//! berth-monitor. An exec into a container with a spare shim (spares.rs)
//! is passed to that spare as it came instead. The server answers nothing itself; a
//! request it cannot take gets a failure line on its socket. EOF on
//! the socket (berthd gone, restarted or upgraded) ends the server: its
//! shims live on (re-parented), the next berthd starts its own server.
//!
//! Why a fork is safe here: the server never starts a thread, and holds no
//! fd but its socket, /dev/null (0–2), its pool of network namespaces made
//! ahead (netns_pool.rs; BERTH_NETNS_POOL; with its own, to come back to),
//! its warmer's pipe (warmer.rs) and its spares' sockets, so a child takes
//! nothing of another exec's along: a create's child keeps the one
//! namespace it was handed, every child (and spare) closes the rest.

use std::fs::File;
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use clap::{CommandFactory, FromArgMatches};
use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};

use crate::args::Args;
use crate::setup::fail;

/// The first argument that makes berth-shim an exec server.
pub const FLAG: &str = "--exec-server";

/// The socket berthd passes.
const SOCKET: RawFd = 3;

/// At most this many fds a request: three stdio fds and the report socket.
const MAX_FDS: usize = 4;

pub fn serve() -> ! {
    // Only the socket and 0–2 (which berthd made /dev/null).
    // SAFETY: close_range with integer arguments, before anything is open.
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, SOCKET + 1, u32::MAX, 0u32) };
    // The forked shims are reaped by the kernel, not by us (SIG_IGN for
    // SIGCHLD: no zombies); each child puts the default back first thing.
    // SAFETY: setting a disposition, no handler.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigIgn,
        )
    };
    let mut pool = crate::netns_pool::NetnsPool::new(pool_size());
    let mut warmer: Option<crate::warmer::Warmer> = None;
    let mut buf = vec![0u8; 64 * 1024];
    // Built once, matched against each request: building it was a third
    // of what the parse cost per exec.
    let mut command = Args::command();
    // What execs into each container need of it, read once (prepared.rs).
    let mut targets = berth_init::exec::Targets::default();
    let mut spares = crate::spares::Spares::default();
    loop {
        // In a quiet moment: the next execs' shims and the next creates'
        // namespaces. Not in a burst, where making them would only delay
        // the requests behind them.
        let pool_short = pool.as_ref().is_some_and(|p| !p.full());
        if (pool_short || spares.wanting()) && !request_within(QUIET) {
            // SAFETY: single-threaded (the server never starts a thread).
            unsafe { spares.make(&mut targets, |target| spare(&mut command, target)) };
            if let Some(pool) = pool.as_mut().filter(|p| !p.full()) {
                pool.fill(|| request_within(std::time::Duration::ZERO));
            }
        }
        let (len, fds) = match receive(&mut buf) {
            Ok(Some(r)) => r,
            // EOF: berthd is gone.
            Ok(None) => std::process::exit(0),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(_) => std::process::exit(1),
        };
        // An exec into a container with a spare: the spare takes it as is.
        let fds = match crate::spares::peek_exec(&buf[..len]) {
            Some(exec) => {
                let passed = spares.pass(&exec.root, &exec.id, &buf[..len], fds);
                spares.want(&exec.root, &exec.id, &exec.parent);
                match passed {
                    Ok(()) => continue,
                    Err(fds) => fds,
                }
            }
            None => fds,
        };
        handle(
            &mut command,
            &buf[..len],
            fds,
            pool.as_mut(),
            &mut warmer,
            &mut targets,
        );
    }
}

/// A spare's life (spares.rs): it waits for its exec's request and then
/// becomes that exec's shim, as the server's forked child would have.
fn spare(
    command: &mut clap::Command,
    target: &berth_init::exec::Prepared,
) -> std::convert::Infallible {
    // Made (and its pages faulted in) before the request, not after.
    let mut buf = vec![0u8; 64 * 1024];
    crate::spares::prewarm();
    if !crate::spares::wait_for_request() {
        std::process::exit(0);
    }
    let (len, mut fds) = match receive(&mut buf) {
        Ok(Some(r)) => r,
        _ => std::process::exit(0),
    };
    let Some(report) = fds.pop() else {
        std::process::exit(0)
    };
    let mut report = File::from(report);
    let args = match parse(command, &buf[..len], fds.len()) {
        Ok(a) => a,
        Err(e) => fail(&mut report, &e),
    };
    // Born in this container's monitors' cgroup: another's exec (never
    // passed here: the server matched its --id and --root) must not run
    // its shim here.
    if args.exec_id.is_none() || !target.names(&args.root, &args.id) {
        let e = format!(
            "exec server: a request for {} passed to another's spare",
            args.id
        );
        fail(&mut report, &e)
    }
    // The container made again under the id since: its target read afresh.
    let current = target.is_for(&args.root, &args.id).then_some(target);
    become_child(&args, fds, report, None, true, current)
}

/// BERTH_NETNS_POOL from berthd (its config's `netns_pool`); no pool
/// without it. Taken out of the environment the shims inherit (the server
/// is single-threaded, nothing reads the environment meanwhile).
fn pool_size() -> usize {
    let size = std::env::var(crate::netns_pool::ENV)
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    std::env::remove_var(crate::netns_pool::ENV);
    size
}

/// How long the socket must stay quiet before the pool is filled: serial
/// creates come ~9 ms apart, a burst's much closer.
const QUIET: std::time::Duration = std::time::Duration::from_millis(5);

/// Whether a request is waiting on the socket, or comes within `wait`.
fn request_within(wait: std::time::Duration) -> bool {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    // SAFETY: SOCKET stays open for the server's whole life.
    let socket = unsafe { std::os::fd::BorrowedFd::borrow_raw(SOCKET) };
    let mut fds = [PollFd::new(socket, PollFlags::POLLIN)];
    let timeout = PollTimeout::try_from(wait).unwrap_or(PollTimeout::MAX);
    // An error counts as a request: receive then says what it is.
    !matches!(poll(&mut fds, timeout), Ok(0))
}

/// One request: (its length, its fds), None at EOF.
fn receive(buf: &mut [u8]) -> nix::Result<Option<(usize, Vec<OwnedFd>)>> {
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        SOCKET,
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds = Vec::new();
    for c in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(rights) = c {
            // SAFETY: the kernel just installed these fds for us.
            fds.extend(
                rights
                    .into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let truncated = msg
        .flags
        .intersects(MsgFlags::MSG_TRUNC | MsgFlags::MSG_CTRUNC);
    match (msg.bytes, truncated) {
        (0, _) if fds.is_empty() => Ok(None),
        // Dropped with its fds: berthd reads EOF on its report socket.
        (_, true) => Ok(Some((0, Vec::new()))),
        (n, false) => Ok(Some((n, fds))),
    }
}

fn handle(
    command: &mut clap::Command,
    request: &[u8],
    mut fds: Vec<OwnedFd>,
    pool: Option<&mut crate::netns_pool::NetnsPool>,
    warmer: &mut Option<crate::warmer::Warmer>,
    targets: &mut berth_init::exec::Targets,
) {
    // The report socket is last; without one there is nobody to answer.
    let Some(report) = fds.pop() else { return };
    let mut report = File::from(report);
    let args = match parse(command, request, fds.len()) {
        Ok(a) => a,
        Err(e) => return answer_failure(&mut report, &e),
    };
    let cgroup = match &args.monitor_cgroup {
        Some(parent) => match crate::cgroup::monitor_cgroup_dir(parent, &args.id) {
            Ok(dir) => Some(dir),
            Err(e) => return answer_failure(&mut report, &e),
        },
        None => None,
    };
    // A create whose spec asks for a new network namespace (and no user
    // namespace) gets one made ahead, if the pool has one.
    let netns = match (pool, &args.exec_id, &args.bundle) {
        (Some(pool), None, Some(bundle)) if crate::netns_pool::wants_one(bundle) => pool.take(),
        _ => None,
    };
    // An exec's target, read (or found kept) here: the child takes its copy
    // of it along with the rest of our memory.
    let target = match args.exec_id {
        Some(_) => targets.get(&args.root, &args.id),
        None => None,
    };
    // SAFETY: single-threaded (the server never starts a thread).
    let (child, born_in_cgroup) = match cgroup
        .as_ref()
        .and_then(|(_, d)| unsafe { berth_init::clone_into::fork_into(d) })
    {
        Some(pid) => (pid, true),
        // SAFETY: as above.
        None => match unsafe { nix::unistd::fork() } {
            Ok(nix::unistd::ForkResult::Child) => (0, false),
            Ok(nix::unistd::ForkResult::Parent { child }) => (child.as_raw(), false),
            Err(e) => return answer_failure(&mut report, &format!("fork: {e}")),
        },
    };
    if child != 0 {
        // The child has its copies; ours (and the request's fds) go now.
        drop((fds, report, netns));
        if let (Some(scope), true, None) = (&args.monitor_cgroup, born_in_cgroup, &args.exec_id) {
            warm_migration(warmer, scope);
        }
        return;
    }
    // The child: an exec's shim, as berth-shim's after its detach.
    // SAFETY: setting a disposition, no handler.
    let _ = unsafe {
        nix::sys::signal::signal(
            nix::sys::signal::Signal::SIGCHLD,
            nix::sys::signal::SigHandler::SigDfl,
        )
    };
    drop(cgroup);
    become_child(&args, fds, report, netns, born_in_cgroup, target)
}

/// The shim proper, in the server's child (or a spare): the request's fds
/// placed, then berth-shim's setup.
fn become_child(
    args: &Args,
    fds: Vec<OwnedFd>,
    report: File,
    netns: Option<OwnedFd>,
    born_in_cgroup: bool,
    target: Option<&berth_init::exec::Prepared>,
) -> ! {
    let (report, netns) = match place_fds(fds, report, netns) {
        Ok(r) => r,
        Err(e) => fail(&mut std::io::stderr(), &e),
    };
    let monitor_cgroup = match (&args.monitor_cgroup, born_in_cgroup) {
        (Some(parent), false) => Some(parent.as_path()),
        _ => None,
    };
    crate::setup::become_shim(
        args,
        report,
        crate::setup::Reader::Berthd,
        monitor_cgroup,
        netns,
        target,
    )
}

/// The request's arguments, checked: an exec's or a create's, with one fd
/// for each `--caller-*` flag (a create passes none: berthd sends one with
/// socket-activation fds to a berth-shim of its own).
fn parse(command: &mut clap::Command, request: &[u8], fds: usize) -> Result<Args, String> {
    let argv: Vec<String> =
        serde_json::from_slice(request).map_err(|e| format!("exec server request: {e}"))?;
    let matches = command
        .try_get_matches_from_mut(std::iter::once("berth-shim".to_string()).chain(argv))
        .map_err(|e| format!("exec server request: {e}"))?;
    let args = Args::from_arg_matches(&matches).map_err(|e| format!("exec server request: {e}"))?;
    if args.passed_fds() as usize != fds {
        return Err(format!(
            "exec server request: {} fds for {} --caller-* flags",
            fds,
            args.passed_fds()
        ));
    }
    Ok(args)
}

fn answer_failure(report: &mut File, error: &str) {
    use std::io::Write;
    let kind = berth_proto::FailureKind::Internal;
    let error = error.to_string();
    let line = berth_proto::ShimReport::Failed { error, kind }.to_line();
    let _ = report.write_all(line.as_bytes());
}

/// In the child: the caller's stdio at 3, 4, … (where berth-shim finds
/// them, Args::caller_stdio), the report socket after them and the network
/// namespace handed out (if any) after that (both close-on-exec), and
/// nothing else — the server's socket and the rest of the pool included.
fn place_fds(
    stdio: Vec<OwnedFd>,
    report: File,
    netns: Option<OwnedFd>,
) -> Result<(File, Option<OwnedFd>), String> {
    let err = |e: nix::errno::Errno| format!("placing the exec's fds: {e}");
    // First out of the way of 3..: a received fd may sit where another goes.
    const HIGH: RawFd = 64;
    let high =
        |fd: RawFd| nix::fcntl::fcntl(fd, nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(HIGH)).map_err(err);
    let moved: Vec<RawFd> = stdio
        .iter()
        .map(|f| high(f.as_raw_fd()))
        .collect::<Result<_, _>>()?;
    let report_high = high(report.as_raw_fd())?;
    drop((stdio, report));
    let mut next = SOCKET;
    for fd in moved {
        // dup2 clears close-on-exec: the process gets these.
        nix::unistd::dup2(fd, next).map_err(err)?;
        next += 1;
    }
    let report_at = next;
    nix::unistd::dup3(report_high, report_at, nix::fcntl::OFlag::O_CLOEXEC).map_err(err)?;
    let netns_at = report_at + 1;
    if let Some(ns) = netns {
        let high = high(ns.as_raw_fd())?;
        drop(ns);
        nix::unistd::dup3(high, netns_at, nix::fcntl::OFlag::O_CLOEXEC).map_err(err)?;
        next = netns_at;
    } else {
        next = report_at;
    }
    // SAFETY: close_range with integer arguments; everything past the last
    // fd placed (the moved copies, the pool; the socket is overwritten or
    // closed here).
    unsafe { nix::libc::syscall(nix::libc::SYS_close_range, next + 1, u32::MAX, 0u32) };
    // SAFETY: report_at (and netns_at, when placed) were just made ours by dup3.
    let netns = (next == netns_at).then(|| unsafe { OwnedFd::from_raw_fd(netns_at) });
    Ok((unsafe { File::from_raw_fd(report_at) }, netns))
}

/// A grace period started now, beside the shim's setup, by the warmer
/// (warmer.rs: why), started in `scope` first if there is none there (or
/// it is gone: its scope stopped).
fn warm_migration(warmer: &mut Option<crate::warmer::Warmer>, scope: &std::path::Path) {
    if warmer
        .as_ref()
        .is_some_and(|w| w.scope() == scope && w.poke())
    {
        return;
    }
    // SAFETY: single-threaded (the server never starts a thread).
    *warmer = unsafe { crate::warmer::Warmer::start(scope) };
    if let Some(w) = warmer {
        w.poke();
    }
}
