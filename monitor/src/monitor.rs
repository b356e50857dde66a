//! The shim's one loop: forward the container's output, reap children, notice
//! the init's exit. poll(2) on the output pipes and a signalfd for SIGCHLD; no
//! threads, so the shim stays a few hundred KiB.

use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::attach::Attach;
use crate::crilog::CriLog;
use crate::journal::{Journal, LineSplitter};

/// Longest line sent as one journal entry; longer ones go in partial pieces.
const MAX_LINE: usize = 16 * 1024;
/// After the init exits, how long stragglers holding the pipes may keep them.
const DRAIN: Duration = Duration::from_secs(2);
/// After the exit, how long a holding shim waits for its first client.
const HOLD: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitStatus {
    Code(i32),
    Signal(i32),
}

struct Stream {
    fd: OwnedFd,
    priority: u8,
    lines: LineSplitter,
    open: bool,
}

/// Where each line goes: journald always (when it answers), and a CRI log
/// file when the container has one.
pub struct Sinks<'a> {
    pub journal: Option<&'a Journal>,
    pub cri: Option<CriLog>,
}

/// Runs until the init has exited and its output is drained; returns its status.
pub fn run(
    init: i32,
    streams: Vec<(OwnedFd, u8)>,
    sinks: &mut Sinks,
    attach: &mut Attach,
) -> ExitStatus {
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    // The shim outlives its starter's terminal and berthd's restarts: the
    // usual "please stop" signals are not for us.
    for s in [
        Signal::SIGTERM,
        Signal::SIGINT,
        Signal::SIGHUP,
        Signal::SIGPIPE,
    ] {
        mask.add(s);
    }
    // SIGUSR1: reopen the CRI log file (the kubelet rotated it).
    mask.add(Signal::SIGUSR1);
    let _ = mask.thread_block();
    let mut sigchld = SigSet::empty();
    sigchld.add(Signal::SIGCHLD);
    sigchld.add(Signal::SIGUSR1);
    let sfd = SignalFd::with_flags(&sigchld, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC).ok();

    let mut streams: Vec<Stream> = streams
        .into_iter()
        .map(|(fd, priority)| Stream {
            fd,
            priority,
            lines: LineSplitter::new(MAX_LINE),
            open: true,
        })
        .collect();
    let mut status = None;
    let mut deadline: Option<Instant> = None;
    let mut hold_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 * 1024];
    // A SIGCHLD may have come before the signalfd existed: reap once up front.
    reap(init, &mut status);
    shed_untouched_code();
    loop {
        if status.is_some() {
            let d = *deadline.get_or_insert_with(|| Instant::now() + DRAIN);
            let drained = streams.iter().all(|s| !s.open) || Instant::now() >= d;
            // A holding shim (exec with --attach) waits a while for its
            // first client, which would otherwise find no socket at all.
            let h = *hold_deadline.get_or_insert_with(|| Instant::now() + HOLD);
            if drained && (!attach.holding() || Instant::now() >= h) {
                break;
            }
        }
        let mut fds: Vec<PollFd> = streams
            .iter()
            .filter(|s| s.open)
            .map(|s| PollFd::new(s.fd.as_fd(), PollFlags::POLLIN))
            .collect();
        if let Some(s) = &sfd {
            fds.push(PollFd::new(s.as_fd(), PollFlags::POLLIN));
        }
        fds.extend(attach.poll_fds());
        let timeout = if status.is_some() { 100u16 } else { 1000u16 };
        let _ = poll(&mut fds, PollTimeout::from(timeout));
        drop(fds);
        // Accept first: a client that connected before the output came
        // (an attach before start, while the monitor was still starting)
        // must get it.
        attach.service();
        for s in streams.iter_mut().filter(|s| s.open) {
            forward(s, &mut buf, sinks, attach);
        }
        if let Some(s) = &sfd {
            while let Ok(Some(info)) = s.read_signal() {
                if info.ssi_signo == Signal::SIGUSR1 as u32 {
                    if let Some(c) = &mut sinks.cri {
                        c.reopen();
                    }
                }
            }
        }
        reap(init, &mut status);
    }
    for s in streams.iter_mut() {
        let priority = s.priority;
        s.lines
            .flush(&mut |line, partial| send(sinks, line, priority, partial));
    }
    status.unwrap_or(ExitStatus::Signal(Signal::SIGKILL as i32))
}

/// Reads what is there (non-blocking) and forwards complete lines.
fn forward(s: &mut Stream, buf: &mut [u8], sinks: &mut Sinks, attach: &mut Attach) {
    let _ = nix::fcntl::fcntl(
        s.fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    );
    loop {
        match nix::unistd::read(s.fd.as_raw_fd(), buf) {
            Ok(0) => {
                s.open = false;
                return;
            }
            Ok(n) => {
                // Syslog priority 3 is the stderr pipe's (6: stdout, a pty).
                let stream = match s.priority {
                    3 => crate::attach::STDERR,
                    _ => crate::attach::STDOUT,
                };
                attach.broadcast(stream, &buf[..n]);
                let priority = s.priority;
                s.lines.push(&buf[..n], &mut |line, partial| {
                    send(sinks, line, priority, partial)
                });
            }
            Err(nix::Error::EAGAIN) => return,
            Err(nix::Error::EINTR) => continue,
            // A pty master reports EIO once the last slave fd is closed.
            Err(_) => {
                s.open = false;
                return;
            }
        }
    }
}

fn send(sinks: &mut Sinks, line: &[u8], priority: u8, partial: bool) {
    if let Some(j) = sinks.journal {
        let _ = j.send(line, priority, partial);
    }
    if let Some(c) = &mut sinks.cri {
        c.write(line, priority, partial);
    }
}

/// Unmaps this binary's code from the process and turns off fault-around for
/// it, so that from now on only the code pages the poll loop runs are mapped.
///
/// Why: the monitor's whole life is one small loop, but by now start-up has
/// touched code all over the binary, and each page fault on file-backed code
/// maps up to 16 neighbouring pages already in the page cache (fault-around):
/// the process ends up mapping nearly its whole text (≈ 850 KiB static), all
/// counted in its RSS for the container's life. The pages stay in the page
/// cache, shared by every monitor: nothing is read from disk again, and a
/// dropped page the loop needs comes back by a minor fault (one page at a
/// time, MADV_RANDOM). Only read-only file-backed code is covered: private
/// (written) pages — data, relocations — lie after `etext`.
fn shed_untouched_code() {
    extern "C" {
        // Defined by the linker (GNU ld and lld): the first byte of the
        // first PT_LOAD segment, and the end of .text.
        static __ehdr_start: u8;
        static etext: u8;
    }
    let page = nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .unwrap_or(4096) as usize;
    let start = std::ptr::addr_of!(__ehdr_start) as usize;
    // Rounded down: a partial last page may share its frame with what follows.
    let end = std::ptr::addr_of!(etext) as usize & !(page - 1);
    if start % page != 0 || end <= start {
        return;
    }
    let (addr, len) = (start as *mut nix::libc::c_void, end - start);
    // SAFETY: [start, end) is this binary's headers and code, read-only and
    // backed by its file, never written: MADV_DONTNEED only drops the page
    // table entries, and the next access maps the same bytes back.
    unsafe {
        if nix::libc::madvise(addr, len, nix::libc::MADV_RANDOM) == 0 {
            nix::libc::madvise(addr, len, nix::libc::MADV_DONTNEED);
        }
    }
}

/// Reaps every exited child (we are a subreaper: orphans land here too).
fn reap(init: i32, status: &mut Option<ExitStatus>) {
    loop {
        match waitpid(None::<Pid>, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) if pid.as_raw() == init => {
                *status = Some(ExitStatus::Code(code))
            }
            Ok(WaitStatus::Signaled(pid, sig, _)) if pid.as_raw() == init => {
                *status = Some(ExitStatus::Signal(sig as i32))
            }
            Ok(WaitStatus::StillAlive) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// What the monitor needs, carried across execve on its command line.
pub struct MonitorArgs {
    pub init: i32,
    pub dir: std::path::PathBuf,
    /// File name of the exit record in `dir`.
    pub record: String,
    pub id: String,
    pub name: String,
    pub journal_socket: std::path::PathBuf,
    pub streams: Vec<(OwnedFd, u8)>,
    /// Where attached clients' input goes (stdin pipe or pty master).
    pub input: Option<OwnedFd>,
    /// The pty master among `streams`, for resizes.
    pub pty: Option<std::os::fd::RawFd>,
    /// attach.sock and ctl, made before the report (see attach.rs).
    pub attach: Option<std::os::unix::net::UnixListener>,
    pub ctl: Option<std::fs::File>,
    /// Hold output (and the exit) for a first attach client.
    pub hold: bool,
    /// File the logs under this systemd unit too (`journalctl -u`).
    pub log_unit: Option<String>,
    /// A CRI-format log file, written besides journald.
    pub log_path: Option<std::path::PathBuf>,
}

/// Re-executes this binary as the monitor, handing over the stream fds.
/// Returns only on failure.
pub fn exec_monitor(a: &MonitorArgs) -> nix::Error {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let mut argv: Vec<CString> = Vec::new();
    let mut push = |s: &[u8]| {
        if let Ok(c) = CString::new(s) {
            argv.push(c);
        }
    };
    push(b"berth-monitor");
    push(a.init.to_string().as_bytes());
    push(a.dir.as_os_str().as_bytes());
    push(a.record.as_bytes());
    push(a.id.as_bytes());
    push(a.name.as_bytes());
    push(a.journal_socket.as_os_str().as_bytes());
    for (fd, priority) in &a.streams {
        // Inherited across the exec on purpose: clear close-on-exec.
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
        push(format!("{}:{priority}", fd.as_raw_fd()).as_bytes());
    }
    if let Some(fd) = &a.input {
        let _ = nix::fcntl::fcntl(
            fd.as_raw_fd(),
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
        push(format!("in={}", fd.as_raw_fd()).as_bytes());
    }
    if let Some(fd) = a.pty {
        push(format!("pty={fd}").as_bytes());
    }
    let inherit = |fd: i32| {
        let _ = nix::fcntl::fcntl(
            fd,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
        );
    };
    if let Some(l) = &a.attach {
        inherit(l.as_raw_fd());
        push(format!("attach={}", l.as_raw_fd()).as_bytes());
    }
    if let Some(c) = &a.ctl {
        inherit(c.as_raw_fd());
        push(format!("ctl={}", c.as_raw_fd()).as_bytes());
    }
    if a.hold {
        push(b"hold");
    }
    if let Some(unit) = &a.log_unit {
        push(format!("unit={unit}").as_bytes());
    }
    if let Some(p) = &a.log_path {
        let mut arg = b"log=".to_vec();
        arg.extend_from_slice(p.as_os_str().as_bytes());
        push(&arg);
    }
    // berth-monitor is installed beside berth-shim.
    let exe = match std::env::current_exe() {
        Ok(p) => p.with_file_name("berth-monitor"),
        Err(e) => return nix::Error::from_raw(e.raw_os_error().unwrap_or(nix::libc::ENOENT)),
    };
    let Ok(exe) = CString::new(exe.as_os_str().as_bytes()) else {
        return nix::Error::EINVAL;
    };
    let env: [CString; 0] = [];
    match nix::unistd::execve(&exe, &argv, &env) {
        Err(e) => e,
        Ok(never) => match never {},
    }
}

/// The monitor's entry point after the re-exec: parse the handed-over
/// arguments by hand (no clap: less code touched, less memory), run, record.
pub fn main_after_exec() -> ! {
    let args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    let text = |i: usize| {
        args.get(i)
            .map(|a| a.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    let init: i32 = text(0).parse().unwrap_or(0);
    let dir = std::path::PathBuf::from(args.get(1).cloned().unwrap_or_default());
    let (record, id, name) = (text(2), text(3), text(4));
    let journal_socket = std::path::PathBuf::from(args.get(5).cloned().unwrap_or_default());
    let mut streams: Vec<(OwnedFd, u8)> = Vec::new();
    let (mut input, mut pty, mut listener, mut ctl) = (None, None, None, None);
    let (mut hold, mut log_unit, mut log_path) = (false, None, None);
    for a in args[6.min(args.len())..].iter().filter_map(|a| a.to_str()) {
        let owned = |fd: &str| -> Option<OwnedFd> {
            let fd: i32 = fd.parse().ok()?;
            let _ = nix::fcntl::fcntl(
                fd,
                nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
            );
            // SAFETY: handed over by our pre-exec self, owned by nobody else.
            Some(unsafe { OwnedFd::from_raw_fd(fd) })
        };
        if let Some(fd) = a.strip_prefix("in=") {
            input = owned(fd);
        } else if let Some(fd) = a.strip_prefix("pty=") {
            pty = fd.parse().ok();
        } else if let Some(fd) = a.strip_prefix("attach=") {
            listener = owned(fd).map(std::os::unix::net::UnixListener::from);
        } else if let Some(fd) = a.strip_prefix("ctl=") {
            ctl = owned(fd).map(std::fs::File::from);
        } else if a == "hold" {
            hold = true;
        } else if let Some(unit) = a.strip_prefix("unit=") {
            log_unit = Some(unit.to_string());
        } else if let Some(p) = a.strip_prefix("log=") {
            log_path = Some(std::path::PathBuf::from(p));
        } else if let Some((fd, prio)) = a.split_once(':') {
            if let (Some(fd), Ok(prio)) = (owned(fd), prio.parse()) {
                streams.push((fd, prio));
            }
        }
    }
    let mut attach = Attach::new(listener, ctl, input, pty, hold);
    if !record.starts_with("exec-") {
        attach.bind_split(&dir);
    }
    // journalctl -u UNIT also matches OBJECT_SYSTEMD_UNIT= from uid 0
    // senders: how a container's output shows under its berth@ unit.
    let extra: Vec<(&str, &str)> = log_unit
        .as_deref()
        .map(|u| vec![("OBJECT_SYSTEMD_UNIT", u)])
        .unwrap_or_default();
    // An exec's output is the container's too (CONTAINER_ID_FULL) but not its
    // log: `<name>.exec` as identifier, so GetLogs can leave it out.
    let identifier = match record.starts_with("exec-") {
        true => format!("{name}.exec"),
        false => name.clone(),
    };
    let journal = Journal::connect(&journal_socket, &id, &name, &identifier, &extra).ok();
    let mut sinks = Sinks {
        journal: journal.as_ref(),
        cri: log_path.map(CriLog::open),
    };
    // The container's init only: an exec's monitor has no cgroup of its own.
    let mut oom = match record.starts_with("exec-") {
        true => None,
        false => crate::oom::OomWatch::of_process(init),
    };
    let status = run(init, streams, &mut sinks, &mut attach);
    let oom_killed = oom.as_mut().is_some_and(|w| w.oom_killed());
    let code = match crate::record::write_exit_record(&dir, &record, init, &status, oom_killed) {
        Ok(_) => 0,
        Err(_) => 1,
    };
    std::process::exit(code)
}
