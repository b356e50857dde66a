//! `exec`: a new process inside a running container — its cgroup, its
//! namespaces, its root — with the process attributes of the exec request.
//!
//! The caller enters the container's pid namespace for one clone (setns of a
//! pid namespace only applies to children) and makes the process straight
//! into its cgroup — spawned in the caller's memory until it execs where it
//! can be, forked otherwise (fork.rs) — and the process joins the other
//! namespaces itself. Into a paused container a first child joins instead
//! and clones the process with CLONE_PARENT. Either way the caller can wait
//! for the process directly; it reports a setup error on a close-on-exec
//! pipe: EOF with nothing read means execve succeeded.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::wait::waitpid;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxSeccomp, Process};

use crate::container::{Record, Status};
use crate::error::{ChildFailure, Error, Result};
use crate::hooks::OciState;
use crate::seccomp;
use crate::sync::{self, Channel};

mod fork;
mod prepared;
mod target;

use fork::{fork_into, join_and_clone};
pub use prepared::{Prepared, Targets};
use target::open_namespaces;

pub struct ExecOptions {
    pub root: PathBuf,
    pub id: String,
    pub process: Process,
    pub console_socket: Option<PathBuf>,
    pub pid_file: Option<PathBuf>,
    pub preserve_fds: u32,
    /// stdin, stdout, stderr for the process (a shim's pipes); None: ours.
    pub stdio: Option<[std::os::fd::RawFd; 3]>,
    /// runc's --ignore-paused: exec into a paused container (the process
    /// starts frozen, and runs once the container is resumed).
    pub ignore_paused: bool,
}

/// Starts the process and returns its pid (a child of the caller).
///
/// Must be called from a single-threaded process (it forks). Needs no
/// system bus: the state comes from state.json and the kernel (/proc, the
/// cgroup files), so an exec never waits on dbus-daemon or systemd.
pub fn exec(opts: &ExecOptions) -> Result<i32> {
    exec_prepared(opts, None)
}

/// As [`exec`], with what is known of the container already (an exec
/// server's [`Targets`]); read afresh unless `prepared` is still current.
pub fn exec_prepared(opts: &ExecOptions, prepared: Option<&Prepared>) -> Result<i32> {
    let loaded;
    let target = match prepared.filter(|p| p.is_for(&opts.root, &opts.id)) {
        Some(p) => p,
        None => {
            loaded = Prepared::load(&opts.root, &opts.id)?;
            &loaded
        }
    };
    let rec = &target.rec;
    // Kept or not, the init may have exited since (or its pid been reused).
    if prepared.is_some() && !rec.alive() {
        return Err(Error::WrongState {
            id: opts.id.clone(),
            op: "exec in",
            status: Status::Stopped,
        });
    }
    let cgroups = target.cgroups.open();
    // As Record::status, but the pause is read from the init's cgroups
    // instead of asking the cgroup driver: for the systemd driver that is a
    // bus connection and two calls to systemd on every exec, and systemd's
    // FreezerState is itself what the kernel says.
    let paused = cgroups.frozen();
    if paused && !opts.ignore_paused {
        return Err(Error::WrongState {
            id: opts.id.clone(),
            op: "exec in",
            status: Status::Paused,
        });
    }
    if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidArgument("exec: no command given".into()));
    }
    let filter = target.filter.as_ref();
    let compiled = target.compiled.clone();
    let namespaces = open_namespaces(rec.pid, &target.namespaces)?;
    let console: Option<OwnedFd> = match &opts.console_socket {
        Some(p) => Some(
            UnixStream::connect(p)
                .map_err(|e| Error::io(format!("connecting to console socket {}", p.display()), e))?
                .into(),
        ),
        None => None,
    };
    let (err_r, err_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe2", e))?;
    let (pid_r, pid_w) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::io("pipe2", e))?;
    // (ours, the process's): where a notifying filter's listener fd comes back.
    let (agent, agent_w) = match filter.filter(|f| seccomp::notifies(f)) {
        Some(_) => {
            let (a, b) = sync::pair().map_err(|e| Error::io("socketpair", e))?;
            (Some(a), Some(b))
        }
        None => (None, None),
    };

    // Into a paused container (--ignore-paused), the process joins the
    // frozen cgroup only once it exists: a first child cloned into it would
    // freeze before it could clone the process, and we would wait for it.
    let v2_target = cgroups.v2_dir.as_ref().filter(|_| !paused);
    let keep_errors = |errors: &File| {
        let mut keep = vec![errors.as_raw_fd()];
        keep.extend(agent_w.as_ref().map(Channel::raw));
        keep
    };
    // Called once, in whichever child becomes the process.
    let mut compiled = compiled;
    let mut process = |errors: &File| {
        run_process(
            opts,
            filter,
            compiled.take(),
            console.as_ref(),
            agent_w.as_ref(),
            &keep_errors(errors),
        )
        .unwrap_err()
    };
    // The process cloned straight into the container: it joins the rest,
    // sets itself up and execs, or says why not on the error pipe. It may
    // run in our memory (spawn_into): it owns nothing, drops nothing of ours.
    let (err_fd, joined_cgroups) = (err_w.as_raw_fd(), cgroups.procs_files(true));
    let mut become_process = || -> std::convert::Infallible {
        // SAFETY: err_w is open until we drop it, after the child is made;
        // ManuallyDrop: the child never closes what is ours.
        let mut errors = std::mem::ManuallyDrop::new(unsafe { File::from_raw_fd(err_fd) });
        let e = match fork::join_in_place(&namespaces, &joined_cgroups) {
            Ok(()) => process(&errors),
            Err(e) => ChildFailure::Setup(e),
        };
        tell(&mut errors, &e);
        // SAFETY: leave without running the caller's destructors or atexit.
        unsafe { libc::_exit(1) }
    };
    // A child in our memory cannot wait for us: with a notifying seccomp
    // filter the process's execve waits for the listener we forward.
    let in_our_memory = agent.is_none();
    // SAFETY (all three): exec() is documented to run in a single-threaded
    // process; become_process only execs or _exits.
    let spawn = |d: &File| unsafe {
        let spawned = match in_our_memory {
            true => crate::clone_into::spawn_into(d, &mut become_process),
            false => None,
        };
        spawned.or_else(|| crate::clone_into::fork_into(d))
    };
    let direct = match v2_target {
        Some(dir) => unsafe { fork::clone_direct(dir, &namespaces, spawn) }?,
        None => None,
    };
    let pid = match direct {
        // A fork's child (spawn_into's never comes back here).
        #[allow(unreachable_code)]
        Some(0) => match become_process() {},
        Some(pid) => {
            drop((err_w, pid_w, pid_r, console, agent_w));
            Some(pid)
        }
        None => {
            // SAFETY: as above.
            let (child, in_v2) = unsafe { fork_into(v2_target) }?;
            if child == 0 {
                drop((err_r, pid_r));
                let mut errors = File::from(err_w);
                let code = match join_and_clone(&namespaces, &cgroups.procs_files(in_v2), paused) {
                    Ok(0) => {
                        let e = process(&errors);
                        tell(&mut errors, &e);
                        1
                    }
                    Ok(pid) => {
                        let _ = File::from(pid_w).write_all(pid.to_string().as_bytes());
                        0
                    }
                    Err(e) => {
                        tell(&mut errors, &ChildFailure::Setup(e));
                        1
                    }
                };
                // SAFETY: leave without running the caller's destructors or atexit.
                unsafe { libc::_exit(code) }
            }
            drop((err_w, pid_w, console, agent_w));
            let _ = waitpid(Pid::from_raw(child), None);
            if paused {
                // A frozen process holds both pipes open until it is resumed
                // and execs: take what the first child wrote (it has exited),
                // and do not wait for the rest.
                for fd in [&pid_r, &err_r] {
                    let _ = nix::fcntl::fcntl(
                        fd.as_raw_fd(),
                        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
                    );
                }
            }
            let mut pid_text = String::new();
            let _ = File::from(pid_r).read_to_string(&mut pid_text);
            pid_text.trim().parse().ok()
        }
    };
    // Before the error pipe: that reaches EOF only at execve, and a
    // notified syscall before it waits for the agent to have the fd.
    if let (Some(ch), Some(p), Some(f)) = (&agent, pid, filter) {
        if let Err(e) = seccomp::agent::forward(ch, f, p, exec_state(rec)) {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::SIGKILL);
            let _ = waitpid(Pid::from_raw(p), None);
            return Err(e.into());
        }
    }
    let mut err = String::new();
    let _ = File::from(err_r).read_to_string(&mut err);
    if !err.is_empty() {
        if let Some(p) = pid {
            let _ = waitpid(Pid::from_raw(p), None);
        }
        let failure = serde_json::from_str(&err).unwrap_or(ChildFailure::Setup(err));
        return Err(Error::of_child(failure, &format!("exec in {}: ", opts.id)));
    }
    let pid = pid.ok_or_else(|| Error::Init("exec: the process was not started".into()))?;
    if let Some(pf) = &opts.pid_file {
        crate::create::write_pid_file(pf, pid)?;
    }
    Ok(pid)
}

/// In a child: why the process did not start, for the caller to read off
/// the error pipe (nothing more can be done if that write fails).
fn tell(errors: &mut File, failure: &ChildFailure) {
    let _ = errors.write_all(&serde_json::to_vec(failure).unwrap_or_default());
}

/// The agent's state for an exec, as runc's: running, the init's pid.
fn exec_state(rec: &Record) -> OciState {
    OciState {
        oci_version: rec.oci_version.clone(),
        id: rec.id.clone(),
        status: Status::Running.to_string(),
        pid: Some(rec.pid),
        bundle: rec.bundle.display().to_string(),
        annotations: rec.annotations.clone(),
    }
}

fn run_process(
    opts: &ExecOptions,
    filter: Option<&LinuxSeccomp>,
    compiled: Option<seccomp::Compiled>,
    console: Option<&OwnedFd>,
    agent: Option<&Channel>,
    keep: &[std::os::fd::RawFd],
) -> std::result::Result<std::convert::Infallible, ChildFailure> {
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    // Its own session, as the init's: `kill 0` in an exec'd shell must not
    // reach the process that waits for it (the shim, runc's caller).
    nix::unistd::setsid().map_err(|e| format!("setsid: {e}"))?;
    if let Some(fds) = opts.stdio {
        crate::process::set_stdio(fds)?;
    }
    // The caller's other fds (and the namespace files we joined through)
    // go before --cwd or args[0] are resolved: a leaked directory fd would
    // lead out of the container as /proc/self/fd/N (CVE-2024-21626).
    let mut keep = keep.to_vec();
    keep.extend(console.map(|c| c.as_raw_fd()));
    crate::child::close_fds_except(3 + opts.preserve_fds, &keep)
        .map_err(|e| format!("close_range: {e}"))?;
    if let Some(sock) = console {
        crate::console::setup(sock, &opts.process, false).map_err(|e| e.to_string())?;
    }
    let prepared = crate::child::prepare_process(
        &opts.process,
        filter,
        compiled,
        3 + opts.preserve_fds,
        agent,
    )?;
    crate::child::exec_prepared(&prepared, filter)
}

/// The container's seccomp filter (linux.seccomp of its config.json), the
/// one thing an exec needs of the spec: read without building the whole
/// Spec (its other fields are skipped, not parsed into types).
pub(super) fn container_seccomp(config: &std::path::Path) -> Result<Option<LinuxSeccomp>> {
    #[derive(serde::Deserialize)]
    struct Spec {
        linux: Option<Linux>,
    }
    #[derive(serde::Deserialize)]
    struct Linux {
        seccomp: Option<LinuxSeccomp>,
    }
    let bad =
        |e: String| Error::InvalidArgument(format!("reading the container's config.json: {e}"));
    let text = std::fs::read(config).map_err(|e| bad(e.to_string()))?;
    let spec: Spec = serde_json::from_slice(&text).map_err(|e| bad(e.to_string()))?;
    Ok(spec.linux.and_then(|l| l.seccomp))
}
