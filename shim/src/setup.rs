//! What the shim does once detached: creates the container (or starts the
//! exec'd process) through berth-init, writes its record, reports, and
//! re-executes into berth-monitor. Shared by `berth-shim` and the exec
//! server's children (exec_server.rs).

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixListener;
use std::path::Path;

use berth_init::create::{create, CreateOptions};
use berth_monitor::monitor;
use berth_proto::{FailureKind, ShimRecord, ShimReport};

use crate::args::Args;
use crate::cgroup::{join_monitor_cgroup, place_self};

/// The shim proper, in the detached child: its own session, /dev/null for
/// its stdio, then `run`; a failure is reported on `report` (one line).
/// `netns`: a network namespace made ahead by the exec server, for a create
/// (netns_pool.rs).
pub fn become_shim(
    args: &Args,
    mut report: File,
    reader: Reader,
    monitor_cgroup: Option<&Path>,
    netns: Option<OwnedFd>,
    target: Option<&berth_init::exec::Prepared>,
) -> ! {
    let _ = nix::unistd::setsid();
    // Nothing of the starter's stdio stays with the shim (or its container).
    if let Ok(null) = File::options().read(true).write(true).open("/dev/null") {
        for fd in 0..3 {
            let _ = nix::unistd::dup2(null.as_raw_fd(), fd);
        }
    }
    match run(args, reader, monitor_cgroup, &mut report, netns, target) {
        Err(f) => fail_kind(&mut report, f.kind, &f.msg),
        // run only returns when it failed (it ends in the monitor's execve).
        Ok(never) => match never {},
    }
}

/// Who reads the report socket, which decides what the shim does after its
/// report.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Reader {
    /// berth-shim's detaching parent, which passes the report on and exits:
    /// the shim steps aside until it is gone (see run).
    Parent,
    /// berthd itself (the exec server's shims). For an exec, berthd reads
    /// on: a quick exec's exit comes as a second line, so an
    /// ExecContainerAndWait hears of it without reading the shim's records
    /// or waiting for its exit (docs/shim.md).
    Berthd,
}

/// A setup failure: its message and the name of its kind (berth-init's
/// `Error::kind`: InvalidArgument, ControllerUnavailable, …), so the starter
/// can sort it without reading the text.
pub struct Failure {
    pub kind: FailureKind,
    pub msg: String,
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
pub fn fail(to: &mut impl Write, error: &str) -> ! {
    fail_kind(to, FailureKind::Internal, error)
}

pub fn fail_kind(to: &mut impl Write, kind: FailureKind, error: &str) -> ! {
    let error = error.to_string();
    let _ = to.write_all(ShimReport::Failed { error, kind }.to_line().as_bytes());
    std::process::exit(1);
}

fn run(
    args: &Args,
    reader: Reader,
    monitor_cgroup: Option<&Path>,
    report: &mut File,
    netns: Option<OwnedFd>,
    target: Option<&berth_init::exec::Prepared>,
) -> Result<std::convert::Infallible, Failure> {
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

    let placer = match args.place_via_starter {
        true => Some(berth_init::cgroups::placed::Placer::over(
            report
                .try_clone()
                .map_err(|e| format!("the report socket: {e}"))?
                .into(),
        )),
        false => None,
    };
    let started = match exec_process {
        Some(process) => berth_init::exec::exec_prepared(
            &berth_init::exec::ExecOptions {
                root: args.root.clone(),
                id: args.id.clone(),
                process,
                console_socket,
                pid_file: None,
                preserve_fds: 0,
                stdio,
                ignore_paused: false,
            },
            target,
        ),
        None => create(&CreateOptions {
            id: args.id.clone(),
            bundle: args.bundle.clone().unwrap_or_default(),
            root: args.root.clone(),
            console_socket,
            systemd_cgroup: args.systemd_cgroup,
            stdio,
            loaded,
            preserve_fds: args.preserve_fds,
            placer,
            pooled_netns: netns.as_ref().map(|ns| ns.as_raw_fd()),
            ..Default::default()
        })
        .map(|rec| rec.pid),
    };
    // The init joined it (or clone made its own): ours goes.
    drop(netns);
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
    let shim_start = write_shim_record(&dir, &shim_record, pid)?;
    // The init waits on the exec FIFO: its stat is read at once. An exec's
    // process may be in its execve, whose lock the read would wait for (and
    // nobody needs its start time).
    let init_start = match args.exec_id {
        None => berth_init::container::process_start_time(pid).unwrap_or(0),
        Some(_) => 0,
    };
    let line = ShimReport::Created {
        // A pid is positive: unsigned_abs only changes the type.
        init_pid: pid.unsigned_abs(),
        shim_pid: std::process::id(),
        init_start,
        shim_start,
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
    // berthd reading an exec's report on closes it only after the exit.
    if reader == Reader::Parent || args.exec_id.is_none() {
        let parent_gone = [nix::poll::PollFd::new(
            report.as_fd(),
            nix::poll::PollFlags::empty(),
        )];
        let _ = nix::poll::poll(&mut { parent_gone }, nix::poll::PollTimeout::from(100u8));
    }

    // An exec that is over already, with nothing to forward (a probe,
    // `true`): recorded here, without starting a monitor just to reap it.
    // An attach or CRI log needs the monitor whatever the process did.
    let quick = args.exec_id.is_some() && attach.is_none() && pty.is_none();
    if quick && args.log_path.is_none() {
        let wait = berth_monitor::quick_exit::WAIT_MS;
        if let Some(status) = berth_monitor::quick_exit::exited_quietly(pid, &streams, wait) {
            let written =
                berth_monitor::record::write_exit_record(&dir, &exit_record, pid, &status, false);
            if let Ok(record) = &written {
                tell_exit(report, record);
            }
            std::process::exit(i32::from(written.is_err()));
        }
    }
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

/// Who the shim is: its pid and start time (so a restarted berthd tells its
/// shim from a reused pid) and the init it watches.
/// Writes shim.json (or an exec's); returns the shim's start time.
fn write_shim_record(dir: &std::path::Path, name: &str, init_pid: i32) -> Result<u64, String> {
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
    berth_monitor::record::write_atomic(dir, name, &record)?;
    Ok(start_time)
}

/// A quick exec's exit, as recorded, on the report socket for a berthd that
/// reads on (Reader::Berthd). Nobody may be reading (ExecContainer's berthd
/// has closed its end): MSG_NOSIGNAL, and no error matters — the record is
/// written.
fn tell_exit(report: &File, record: &berth_proto::ExitRecord) {
    let Ok(mut line) = serde_json::to_vec(record) else {
        return;
    };
    line.push(b'\n');
    let _ = nix::sys::socket::send(
        report.as_raw_fd(),
        &line,
        nix::sys::socket::MsgFlags::MSG_NOSIGNAL,
    );
}
