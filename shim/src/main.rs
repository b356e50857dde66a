//! berth-shim: one small, synchronous process per container. It detaches from
//! whoever started it (berthd, a test), becomes the container's subreaper,
//! creates the container through berth-init as its own child, holds the
//! container's stdio (→ journald), and when the init exits writes the exit
//! record atomically and exits.
//!
//! Protocol with the starter: one line on stdout, then stdout is closed: a
//! `berth_proto::ShimReport` — `{"init_pid":N,"shim_pid":M}` once the
//! container is created (blocked on its exec FIFO), or
//! `{"error":"…","kind":"…"}`. `berth-shim` itself exits 0 (created) or 1.

use berth_monitor::monitor;

use std::fs::File;
use std::io::{BufRead, Write};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};

use berth_init::create::{create, CreateOptions};
use berth_proto::{FailureKind, ShimRecord, ShimReport};
use clap::Parser;
use nix::unistd::{fork, ForkResult};

#[derive(Parser, Debug)]
#[command(name = "berth-shim", version, about = "berth's per-container shim")]
struct Args {
    /// Container id.
    #[arg(long)]
    id: String,
    /// Bundle directory (config.json + rootfs). Required unless --exec-id.
    #[arg(long, required_unless_present = "exec_id")]
    bundle: Option<PathBuf>,
    /// Run a new process in the (running) container ID instead of creating
    /// it: one shim per exec'd process, records named after this id.
    #[arg(long, requires = "process")]
    exec_id: Option<String>,
    /// The exec'd process: an OCI process object (process.json).
    #[arg(long)]
    process: Option<PathBuf>,
    /// State root: the container's state dir is ROOT/ID.
    #[arg(long, default_value = "/run/berth")]
    root: PathBuf,
    /// Name for the logs (CONTAINER_NAME); defaults to the id.
    #[arg(long)]
    name: Option<String>,
    /// Put the container in a systemd scope (berth-ID.scope in berth.slice).
    #[arg(long)]
    systemd_cgroup: bool,
    /// Put the shim itself in its own scope (berth-shim-ID.scope), out of its
    /// starter's cgroup (so `systemctl restart berthd` cannot kill it).
    #[arg(long)]
    shim_scope: bool,
    /// Put the shim in sub-cgroup ID of this delegated cgroup (berthd's
    /// berthd-monitors.scope), made by mkdir: born there (clone3
    /// CLONE_INTO_CGROUP), else moved by writing cgroup.procs — no systemd
    /// call, no unit of its own.
    #[arg(long, conflicts_with = "shim_scope")]
    monitor_cgroup: Option<PathBuf>,
    /// Give the container a stdin pipe fed by attach.sock clients (else
    /// /dev/null, so a process reading stdin sees EOF at once).
    #[arg(long)]
    stdin: bool,
    /// For an exec: bind exec-ID.attach.sock (and exec-ID.ctl), keep the
    /// first 64 KiB of output for the first client and wait up to 30 s after
    /// the exit for it — the process runs before anyone can attach.
    #[arg(long, requires = "exec_id")]
    attach: bool,
    /// For an exec: fd 3 (then 4, 5 — in this order, for the flags given)
    /// is the caller's stdin for the process, no pipe from attach clients
    /// (berthd's ExecContainer option stdin_fd).
    #[arg(long, requires = "exec_id", conflicts_with_all = ["attach", "stdin"])]
    caller_stdin: bool,
    /// The caller's stdout for the process, not the monitor's pipe.
    #[arg(long, requires = "exec_id", conflicts_with = "attach")]
    caller_stdout: bool,
    /// The caller's stderr for the process, not the monitor's pipe.
    #[arg(long, requires = "exec_id", conflicts_with = "attach")]
    caller_stderr: bool,
    /// Also file the logs under this systemd unit (`journalctl -u UNIT`).
    #[arg(long)]
    log_unit: Option<String>,
    /// Also write the output to this CRI-format log file (berth-cri).
    #[arg(long, conflicts_with = "exec_id")]
    log_path: Option<PathBuf>,
    /// Fds 3..3+N (socket activation's listening sockets, from berthd) go
    /// to the container's process, as runc's --preserve-fds; the shim itself
    /// closes them once the container holds them.
    #[arg(long, default_value_t = 0, conflicts_with = "exec_id")]
    preserve_fds: u32,
    /// journald's native socket.
    #[arg(long, default_value = "/run/systemd/journal/socket")]
    journal_socket: PathBuf,
}

impl Args {
    /// The fds berthd passed from 3 on: socket activation's or an exec's
    /// caller stdio (never both: --preserve-fds conflicts with --exec-id).
    fn passed_fds(&self) -> u32 {
        let caller = [self.caller_stdin, self.caller_stdout, self.caller_stderr];
        self.preserve_fds + caller.iter().filter(|b| **b).count() as u32
    }

    /// The caller's stdio fds, [stdin, stdout, stderr], at 3, 4, … in order.
    fn caller_stdio(&self) -> [Option<OwnedFd>; 3] {
        let mut next = 3;
        [self.caller_stdin, self.caller_stdout, self.caller_stderr].map(|given| {
            given.then(|| {
                // SAFETY: berthd passed these fds (3..3+N, kept open by
                // main's close_range); each is taken once, here.
                let fd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(next) };
                next += 1;
                fd
            })
        })
    }
}

fn main() {
    let args = Args::parse();
    // Only 0-2 and the fds passed on purpose (3..3+N) are the shim's: an fd
    // its starter let slip (zbus receives D-Bus fds without close-on-exec,
    // so berthd holds a listening socket open-on-exec while it handles the
    // CreateContainer that carried it) would otherwise stay open in the
    // monitor for the container's whole life.
    // SAFETY: close_range with integer arguments, before anything is open.
    unsafe {
        nix::libc::syscall(
            nix::libc::SYS_close_range,
            3 + args.passed_fds(),
            u32::MAX,
            0u32,
        )
    };
    // Detach: the real shim is a child that carries on as an orphan, adopted
    // by PID 1 or the nearest subreaper. This process waits for its report on
    // a pipe, prints it, and exits 0 (created) or 1 — so for the starter,
    // `berth-shim` returning means the container exists, as with `runc create`.
    let (report_r, report_w) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
        Ok(p) => p,
        Err(e) => fail(&mut std::io::stdout(), &format!("pipe2: {e}")),
    };
    // The shim's cgroup (with --monitor-cgroup): made now, so the shim is
    // born in it (clone3 CLONE_INTO_CGROUP) instead of moving there later,
    // a migration that waits for an RCU grace period (2–17 ms: an exec's
    // shim has no migration of systemd's to ride on).
    let cgroup = match &args.monitor_cgroup {
        Some(parent) => match monitor_cgroup_dir(parent, &args.id) {
            Ok(dir) => Some(dir),
            Err(e) => fail(&mut std::io::stdout(), &e),
        },
        None => None,
    };
    // SAFETY: single-threaded here (nothing has started a thread yet); the
    // child runs on with no fork handler of glibc's having run, as after a
    // raw clone: it holds no lock (there was no other thread to hold one).
    let (forked, born_in_cgroup) = match cgroup
        .as_ref()
        .and_then(|(_, d)| unsafe { berth_init::clone_into::fork_into(d) })
    {
        Some(0) => (Ok(ForkResult::Child), true),
        Some(pid) => {
            let child = nix::unistd::Pid::from_raw(pid);
            (Ok(ForkResult::Parent { child }), true)
        }
        // SAFETY: as above.
        None => (unsafe { fork() }, false),
    };
    match forked {
        Ok(ForkResult::Parent { child }) => {
            drop(report_w);
            // One line, not to EOF: the container's init (forked during setup)
            // holds a copy of the pipe until it execs.
            let mut line = String::new();
            let _ = std::io::BufReader::new(File::from(report_r)).read_line(&mut line);
            let created = match ShimReport::parse(&line) {
                Ok(ShimReport::Created { .. }) => true,
                Ok(ShimReport::Failed { .. }) => false,
                Err(e) => {
                    // Died before reporting (nothing to parse), or said what
                    // no report is: the starter hears why, as a failure.
                    let error = match line.is_empty() {
                        true => "the shim died during setup".to_string(),
                        false => e.to_string(),
                    };
                    let kind = FailureKind::Internal;
                    line = ShimReport::Failed { error, kind }.to_line();
                    false
                }
            };
            if !created {
                // Nothing stays of a failed create: the shim (it exits
                // right after its report) and then its cgroup, if it was
                // made for this container (an exec's is its container's).
                let _ = nix::sys::wait::waitpid(child, None);
                if let (Some((dir, _)), None) = (&cgroup, &args.exec_id) {
                    let _ = std::fs::remove_dir(dir);
                }
            }
            let _ = std::io::stdout().write_all(line.as_bytes());
            std::process::exit(if created { 0 } else { 1 });
        }
        Ok(ForkResult::Child) => {}
        Err(e) => fail(&mut std::io::stdout(), &format!("fork: {e}")),
    }
    drop(report_r);
    let monitor_cgroup = match (&args.monitor_cgroup, born_in_cgroup) {
        // Not born there (clone3 refused): moved there once the container
        // exists, riding on its scope's migration (see run).
        (Some(parent), false) => Some(parent.as_path()),
        _ => None,
    };
    drop(cgroup);
    let _ = nix::unistd::setsid();
    let mut report = File::from(report_w);
    // Nothing of the starter's stdio stays with the shim (or its container).
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    if let Err(f) = run(&args, monitor_cgroup, &mut report) {
        fail_kind(&mut report, f.kind, &f.msg);
    }
}

/// A setup failure: its message and the name of its kind (berth-init's
/// `Error::kind`: InvalidArgument, ControllerUnavailable, …), so the starter
/// can sort it without reading the text.
struct Failure {
    kind: FailureKind,
    msg: String,
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure {
            kind: FailureKind::Internal,
            msg,
        }
    }
}

/// The one line for the starter, when setup failed.
fn fail(to: &mut impl Write, error: &str) -> ! {
    fail_kind(to, FailureKind::Internal, error)
}

fn fail_kind(to: &mut impl Write, kind: FailureKind, error: &str) -> ! {
    let error = error.to_string();
    let _ = to.write_all(ShimReport::Failed { error, kind }.to_line().as_bytes());
    std::process::exit(1);
}

fn run(args: &Args, monitor_cgroup: Option<&Path>, report: &mut File) -> Result<(), Failure> {
    // Orphans of the container (when it has no pid namespace of its own) and
    // exec'd processes are re-parented to us, so we can reap them.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| format!("PR_SET_CHILD_SUBREAPER: {e}"))?;
    let dev_null: OwnedFd = File::open("/dev/null")
        .map_err(|e| format!("/dev/null: {e}"))?
        .into();
    let (out_r, out_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;

    let exec_process = match (&args.exec_id, &args.process) {
        (Some(exec_id), Some(path)) => {
            berth_init::error::validate_id(exec_id).map_err(|e| format!("--exec-id: {e}"))?;
            let text =
                std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
            let p: oci_spec::runtime::Process = serde_json::from_str(&text)
                .map_err(|e| format!("{}: invalid process JSON: {e}", path.display()))?;
            Some(p)
        }
        _ => None,
    };
    // Loaded once: create() takes it as it is instead of reading it again.
    let mut loaded = None;
    let terminal = match (&exec_process, &args.bundle) {
        (Some(p), _) => p.terminal().unwrap_or(false),
        (None, Some(bundle)) => {
            let b = berth_init::spec::load(bundle).map_err(|e| Failure {
                kind: FailureKind::InvalidArgument,
                msg: e.to_string(),
            })?;
            let terminal = b
                .spec
                .process()
                .as_ref()
                .and_then(|p| p.terminal())
                .unwrap_or(false);
            loaded = Some(b);
            terminal
        }
        (None, None) => return Err(String::from("--bundle is required").into()),
    };
    // A terminal process sends its pty master to a console socket during
    // setup; the connection waits in the backlog until we accept below.
    let console_path = args.root.join(format!(
        ".{}.{}.console",
        args.id,
        args.exec_id.as_deref().unwrap_or("init")
    ));
    let console = if terminal {
        let _ = std::fs::create_dir_all(&args.root);
        let _ = std::fs::remove_file(&console_path);
        Some(UnixListener::bind(&console_path).map_err(|e| format!("console socket: {e}"))?)
    } else {
        None
    };
    let console_socket = console.as_ref().map(|_| console_path.clone());
    let (stdin_r, stdin_w) = if args.stdin {
        let (r, w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| e.to_string())?;
        (Some(r), Some(w))
    } else {
        (None, None)
    };
    let stdin_fd = stdin_r
        .as_ref()
        .map_or(dev_null.as_raw_fd(), |r| r.as_raw_fd());
    // The caller's fds, where given, in place of ours; the process's
    // copies are made at its start, ours closed right after.
    let caller = args.caller_stdio();
    let pick = |i: usize, ours: RawFd| caller[i].as_ref().map_or(ours, |f| f.as_raw_fd());
    let stdio = Some([
        pick(0, stdin_fd),
        pick(1, out_w.as_raw_fd()),
        pick(2, err_w.as_raw_fd()),
    ]);

    let started = match exec_process {
        Some(process) => berth_init::exec::exec(&berth_init::exec::ExecOptions {
            root: args.root.clone(),
            id: args.id.clone(),
            process,
            console_socket,
            pid_file: None,
            preserve_fds: 0,
            stdio,
            ignore_paused: false,
        }),
        None => create(&CreateOptions {
            id: args.id.clone(),
            bundle: args.bundle.clone().unwrap_or_default(),
            root: args.root.clone(),
            console_socket,
            systemd_cgroup: args.systemd_cgroup,
            stdio,
            loaded,
            preserve_fds: args.preserve_fds,
            ..Default::default()
        })
        .map(|rec| rec.pid),
    };
    if args.preserve_fds > 0 {
        // The container's init has its copies: a monitor holding the
        // listening sockets for the container's whole life would keep them
        // open past it (and show in its fd list).
        // SAFETY: close_range with integer arguments; 3..3+N are the fds
        // berthd passed, used by nothing in this process.
        unsafe {
            nix::libc::syscall(
                nix::libc::SYS_close_range,
                3u32,
                2 + args.preserve_fds,
                0u32,
            )
        };
    }
    let _ = std::fs::remove_file(&console_path);
    let pid = started.map_err(|e| Failure {
        kind: e.kind(),
        msg: e.to_string(),
    })?;
    // From here on a failure (the shim's own scope name taken, say) must not
    // leave the container behind: the starter only hears the error.
    let mut undo = Undo {
        args,
        pid,
        armed: true,
    };
    drop((out_w, err_w, stdin_r));
    // A stream the caller took has no writer: nothing for the monitor.
    let took = [caller[1].is_some(), caller[2].is_some()];
    drop(caller);

    // Attached clients write to the pty master (a terminal) or the stdin pipe.
    let (streams, input, pty) = match console {
        Some(listener) => {
            let master = berth_init::console::receive_master(&listener)
                .map_err(|e| format!("console: {e}"))?;
            drop((out_r, err_r));
            let input = master.try_clone().map_err(|e| format!("dup pty: {e}"))?;
            let pty = master.as_raw_fd();
            (vec![(master, 6u8)], Some(input), Some(pty))
        }
        None => {
            let ours = [(out_r, 6u8), (err_r, 3u8)];
            let streams = ours.into_iter().zip(took).filter(|(_, t)| !t);
            (streams.map(|(s, _)| s).collect(), stdin_w, None)
        }
    };
    if args.shim_scope {
        place_self(&args.id, args.exec_id.as_deref())?;
    }
    if let Some(parent) = monitor_cgroup {
        join_monitor_cgroup(parent, &args.id)?;
    }
    let dir = berth_init::container::dir(&args.root, &args.id);
    // An exec's shim leaves attaching to the container's own shim.
    let (attach, ctl) = match &args.exec_id {
        None => berth_monitor::attach::Attach::bind(&dir, ""),
        Some(e) if args.attach => berth_monitor::attach::Attach::bind(&dir, &format!("exec-{e}.")),
        Some(_) => (None, None),
    };
    let (shim_record, exit_record) = berth_proto::record_names(args.exec_id.as_deref());
    write_shim_record(&dir, &shim_record, pid)?;

    let line = ShimReport::Created {
        // A pid is positive: unsigned_abs only changes the type.
        init_pid: pid.unsigned_abs(),
        shim_pid: std::process::id(),
    }
    .to_line();
    report
        .write_all(line.as_bytes())
        .map_err(|e| format!("reporting: {e}"))?;
    // Reported: the container is the starter's now (a monitor that fails to
    // start below is a shim gone without an exit record: "shim died").
    undo.armed = false;
    drop(dev_null);
    // The starter hears of the report only once our parent has passed it
    // on and exited, and on 2 busy cores the parent was often not run until
    // the monitor below had started (0.3–1.3 ms of an exec's ~6). So step
    // aside until it is gone: its end of the pipe closing shows as POLLERR
    // on ours. Bounded, so a parent that hangs cannot hold the container's
    // output unread.
    let parent_gone = [nix::poll::PollFd::new(
        report.as_fd(),
        nix::poll::PollFlags::empty(),
    )];
    let _ = nix::poll::poll(&mut { parent_gone }, nix::poll::PollTimeout::from(100u8));

    let name = args.name.clone().unwrap_or_else(|| args.id.clone());
    // Re-exec into the monitor: a fresh address space without the setup's
    // threads (zbus), heap and touched code is what keeps a shim near
    // 1 MiB RSS for the container's whole life.
    let err = monitor::exec_monitor(&monitor::MonitorArgs {
        init: pid,
        dir,
        record: exit_record,
        id: args.id.clone(),
        name,
        journal_socket: args.journal_socket.clone(),
        streams,
        input,
        pty,
        attach,
        ctl,
        hold: args.attach,
        log_unit: args.log_unit.clone(),
        log_path: args.log_path.clone(),
    });
    Err(format!("re-exec into the monitor: {err}").into())
}

/// What a setup failure after the container (or exec'd process) exists
/// takes back when it unwinds out of `run`: the container, deleted with its
/// scope and state dir; an exec's process, killed.
struct Undo<'a> {
    args: &'a Args,
    pid: i32,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        match &self.args.exec_id {
            None => {
                let _ = berth_init::container::delete(&self.args.root, &self.args.id, true);
            }
            Some(_) => {
                let pid = nix::unistd::Pid::from_raw(self.pid);
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            }
        }
    }
}

/// Moves the shim into `berth-shim-<id>.scope` (podman's layout: the monitor
/// in its own small scope, never in the daemon's service cgroup).
fn place_self(id: &str, exec_id: Option<&str>) -> Result<(), Failure> {
    let path = berth_init::cgroups::naming::shim_scope_path(id, exec_id);
    let mut mgr = berth_init::cgroups::manager(true, id, Some(std::path::Path::new(&path)))
        .map_err(|e| Failure::from(e.to_string()))?;
    mgr.apply(std::process::id() as i32, None)
        .map_err(|e| Failure {
            // Its scope's name is taken: as for the container's own scope.
            kind: match e {
                berth_init::cgroups::CgroupError::UnitExists { .. } => FailureKind::AlreadyExists,
                _ => FailureKind::Internal,
            },
            msg: format!("placing the shim: {e}"),
        })
}

/// `PARENT/<id>`, made if missing (the container's monitor and its execs'
/// shims share it), and opened for clone3: (path, directory).
fn monitor_cgroup_dir(parent: &Path, id: &str) -> Result<(PathBuf, File), String> {
    // The id names a directory: one path component, never "..".
    berth_init::error::validate_id(id).map_err(|e| format!("--id: {e}"))?;
    let dir = parent.join(id);
    let err = |e: std::io::Error| format!("the shim's cgroup {}: {e}", dir.display());
    match std::fs::create_dir(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(err(e)),
        _ => {}
    }
    let opened = File::options()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY)
        .open(&dir);
    opened.map(|f| (dir.clone(), f)).map_err(err)
}

/// Moves the shim into `PARENT/<id>` (made if missing; the container's
/// monitor and its execs' shims share it). The id was validated by the
/// create or exec above, so it is one path component.
fn join_monitor_cgroup(parent: &Path, id: &str) -> Result<(), Failure> {
    let dir = parent.join(id);
    let pid = std::process::id().to_string();
    let join = || -> std::io::Result<()> {
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        std::fs::write(dir.join("cgroup.procs"), &pid)
    };
    // Once more if berthd's start-up sweep removed the directory (empty)
    // between our mkdir and our write.
    join()
        .or_else(|_| join())
        .map_err(|e| format!("placing the shim in {}: {e}", dir.display()).into())
}

/// Who the shim is: its pid and start time (so a restarted berthd tells its
/// shim from a reused pid) and the init it watches.
fn write_shim_record(dir: &std::path::Path, name: &str, init_pid: i32) -> Result<(), String> {
    let pid = std::process::id();
    // Our own start time: /proc/self is there, so None is a broken /proc,
    // and a record berthd would misread is worse than none.
    let start_time = berth_init::container::process_start_time(pid as i32)
        .ok_or_else(|| format!("no start time for the shim (pid {pid}) in /proc"))?;
    let record = ShimRecord {
        pid,
        start_time,
        init_pid: init_pid.unsigned_abs(),
    };
    berth_monitor::record::write_atomic(dir, name, &record)
}
