//! `exec`: a new process inside a running container — its cgroup, its
//! namespaces, its root — with the process attributes of the exec request.
//!
//! A first child joins the cgroup and the namespaces (setns of a pid namespace
//! only applies to children), then clones the real process with CLONE_PARENT,
//! so the caller can wait for it directly. The process reports a setup error
//! on a close-on-exec pipe: EOF with nothing read means execve succeeded.

use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sched::{setns, CloneFlags};
use nix::sys::wait::waitpid;
use nix::unistd::{fork, ForkResult, Pid};
use oci_spec::runtime::{LinuxSeccomp, Process};

use crate::container::{Record, Status};
use crate::error::{ChildFailure, Error, Result};
use crate::hooks::OciState;
use crate::namespaces::clone_fork;
use crate::seccomp;
use crate::sync::{self, Channel};

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

/// The namespaces an exec joins, user first (it grants the right to join
/// the others) and mount last (after it, host paths are gone).
const ORDER: &[(&str, CloneFlags)] = &[
    ("user", CloneFlags::CLONE_NEWUSER),
    ("ipc", CloneFlags::CLONE_NEWIPC),
    ("uts", CloneFlags::CLONE_NEWUTS),
    ("net", CloneFlags::CLONE_NEWNET),
    ("pid", CloneFlags::CLONE_NEWPID),
    ("cgroup", CloneFlags::CLONE_NEWCGROUP),
    ("mnt", CloneFlags::CLONE_NEWNS),
];

/// Starts the process and returns its pid (a child of the caller).
///
/// Must be called from a single-threaded process (it forks). Needs no
/// system bus: the state comes from state.json and the kernel (/proc, the
/// cgroup files), so an exec never waits on dbus-daemon or systemd.
pub fn exec(opts: &ExecOptions) -> Result<i32> {
    let rec = Record::load(&opts.root, &opts.id)?;
    let wrong = |status| Error::WrongState {
        id: opts.id.clone(),
        op: "exec in",
        status,
    };
    if !rec.alive() {
        return Err(wrong(Status::Stopped));
    }
    let cgroups = cgroups_of(rec.pid)?;
    // As Record::status, but the pause is read from the init's cgroups
    // instead of asking the cgroup driver: for the systemd driver that is a
    // bus connection and two calls to systemd on every exec, and systemd's
    // FreezerState is itself what the kernel says.
    let paused = cgroups.frozen();
    if paused && !opts.ignore_paused {
        return Err(wrong(Status::Paused));
    }
    if opts.process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(Error::InvalidArgument("exec: no command given".into()));
    }
    let spec = oci_spec::runtime::Spec::load(rec.bundle.join("config.json"))
        .map_err(|e| Error::InvalidArgument(format!("reading the container's config.json: {e}")))?;
    let filter = spec.linux().as_ref().and_then(|l| l.seccomp().clone());
    let namespaces = namespaces_of(rec.pid)?;
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
    let (agent, agent_w) = match filter.as_ref().filter(|f| seccomp::notifies(f)) {
        Some(_) => {
            let (a, b) = sync::pair().map_err(|e| Error::io("socketpair", e))?;
            (Some(a), Some(b))
        }
        None => (None, None),
    };

    // SAFETY: exec() is documented to run in a single-threaded process.
    // Into a paused container (--ignore-paused), the process joins the
    // frozen cgroup only once it exists: a first child cloned into it would
    // freeze before it could clone the process, and we would wait for it.
    let v2_target = cgroups.v2_dir.as_ref().filter(|_| !paused);
    let (child, in_v2) = unsafe { fork_into(v2_target) }?;
    match child {
        0 => {
            drop((err_r, pid_r));
            let mut errors = File::from(err_w);
            let code = match join_and_clone(&namespaces, &cgroups.procs_files(in_v2), paused) {
                Ok(0) => {
                    let mut keep = vec![errors.as_raw_fd()];
                    keep.extend(agent_w.as_ref().map(Channel::raw));
                    let e = run_process(
                        opts,
                        filter.as_ref(),
                        console.as_ref(),
                        agent_w.as_ref(),
                        &keep,
                    )
                    .unwrap_err();
                    let _ = errors.write_all(&serde_json::to_vec(&e).unwrap_or_default());
                    1
                }
                Ok(pid) => {
                    let _ = File::from(pid_w).write_all(pid.to_string().as_bytes());
                    0
                }
                Err(e) => {
                    let e = ChildFailure::Setup(e);
                    let _ = errors.write_all(&serde_json::to_vec(&e).unwrap_or_default());
                    1
                }
            };
            // SAFETY: leave without running the caller's destructors or atexit.
            unsafe { libc::_exit(code) }
        }
        child => {
            let child = Pid::from_raw(child);
            drop((err_w, pid_w, console, agent_w));
            let _ = waitpid(child, None);
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
            let pid: Option<i32> = pid_text.trim().parse().ok();
            // Before the error pipe: that reaches EOF only at execve, and a
            // notified syscall before it waits for the agent to have the fd.
            if let (Some(ch), Some(p), Some(f)) = (&agent, pid, &filter) {
                if let Err(e) = seccomp::agent::forward(ch, f, p, exec_state(&rec)) {
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
                return Err(failure.into_error(&format!("exec in {}: ", opts.id)));
            }
            let pid = pid.ok_or_else(|| Error::Init("exec: the process was not started".into()))?;
            if let Some(pf) = &opts.pid_file {
                crate::create::write_pid_file(pf, pid)?;
            }
            Ok(pid)
        }
    }
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

/// fork(), non-dumpable, and where it can be, straight into the cgroup2
/// directory `v2`: returns (0 in the child | the child's pid, whether the
/// child started in `v2`).
///
/// Why not fork and write cgroup.procs: moving a task between cgroups takes
/// cgroup_threadgroup_rwsem for writing, which waits for an RCU grace period
/// (2–15 ms on a busy 2-core host, the largest item of an exec); a clone
/// into the cgroup only takes it for reading. Where clone3 or
/// CLONE_INTO_CGROUP is missing (Linux < 5.7, a seccomp filter that refuses
/// clone3) or refused for this cgroup, a plain fork is made and the child
/// writes cgroup.procs as before.
///
/// The child is non-dumpable from its first instruction (the flag is
/// inherited at fork, so ours is dropped around the clone and put back),
/// because it is in the container's cgroup from then on.
///
/// # Safety
/// As fork: the caller must be single-threaded. clone3 is called without
/// glibc's fork handlers, as clone_fork is; the child only runs this
/// module's code before it execs or _exits.
unsafe fn fork_into(v2: Option<&File>) -> Result<(i32, bool)> {
    let dumpable = nix::sys::prctl::get_dumpable().unwrap_or(true);
    nix::sys::prctl::set_dumpable(false).map_err(|e| Error::io("prctl(PR_SET_DUMPABLE)", e))?;
    let forked = (|| {
        if let Some(dir) = v2 {
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
            if rc >= 0 {
                return Ok((rc as i32, true));
            }
        }
        match fork().map_err(|e| Error::io("fork", e))? {
            ForkResult::Child => Ok((0, false)),
            ForkResult::Parent { child } => Ok((child.as_raw(), false)),
        }
    })();
    if !matches!(forked, Ok((0, _))) && dumpable {
        let _ = nix::sys::prctl::set_dumpable(true);
    }
    forked
}

/// In the first child: join cgroups (those it did not start in) and
/// namespaces, then clone the process as a sibling (CLONE_PARENT). Returns
/// 0 in the process, its pid in the child.
/// With `late`, the cgroups are joined by the process, not the first child:
/// their files are opened now (the host's, before setns) and the process's
/// pid written into them after the clone.
fn join_and_clone(
    namespaces: &[(CloneFlags, File)],
    cgroups: &[&Path],
    late: bool,
) -> std::result::Result<i32, String> {
    // Non-dumpable before anything joins the container, so the process
    // cloned below is never, even for an instant, a runtime binary in the
    // container that its processes could ptrace or open through
    // /proc/<pid>/exe (CVE-2019-5736, CVE-2016-9962); the flag is inherited.
    // (fork_into made it so already; this keeps it so whatever the caller.)
    nix::sys::prctl::set_dumpable(false).map_err(|e| format!("prctl(PR_SET_DUMPABLE): {e}"))?;
    let join_err = |p: &Path, e| format!("joining cgroup {}: {e}", p.display());
    let mut later = Vec::new();
    for procs in cgroups {
        if late {
            let f = fs::OpenOptions::new().write(true).open(procs);
            later.push((*procs, f.map_err(|e| join_err(procs, e))?));
        } else {
            fs::write(procs, "0").map_err(|e| join_err(procs, e))?;
        }
    }
    for (flag, file) in namespaces {
        setns(file, *flag).map_err(|e| format!("setns({flag:?}): {e}"))?;
    }
    // SAFETY: the first child is single-threaded.
    let pid = unsafe { clone_fork(CloneFlags::CLONE_PARENT) }.map_err(|e| format!("clone: {e}"))?;
    if pid > 0 {
        // Our pid namespace is still the caller's: the pid means the same
        // to the cgroup files.
        for (procs, mut f) in later {
            f.write_all(pid.to_string().as_bytes())
                .map_err(|e| join_err(procs, e))?;
        }
    }
    Ok(pid)
}

fn run_process(
    opts: &ExecOptions,
    filter: Option<&LinuxSeccomp>,
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
    let prepared =
        crate::child::prepare_process(&opts.process, filter, 3 + opts.preserve_fds, agent)?;
    crate::child::exec_prepared(&prepared, filter)
}

/// The container's namespaces that differ from ours, opened now (while the
/// host's /proc is ours), in join order.
fn namespaces_of(pid: i32) -> Result<Vec<(CloneFlags, File)>> {
    let mut out = Vec::new();
    for (name, flag) in ORDER {
        let theirs = format!("/proc/{pid}/ns/{name}");
        let ours = format!("/proc/self/ns/{name}");
        let (Ok(t), Ok(o)) = (fs::metadata(&theirs), fs::metadata(&ours)) else {
            continue;
        };
        if t.ino() == o.ino() && t.dev() == o.dev() {
            continue;
        }
        let f = File::open(&theirs).map_err(|e| Error::io(format!("opening {theirs}"), e))?;
        out.push((*flag, f));
    }
    Ok(out)
}

/// The cgroups of the container's init, in every hierarchy, so the exec'd
/// process is accounted, limited and frozen with the container.
struct Cgroups {
    /// Its cgroup2 directory, opened (the clone target), and its cgroup.procs.
    v2_dir: Option<File>,
    v2_procs: Option<PathBuf>,
    /// Its cgroup.procs in each v1 hierarchy (hybrid and legacy hosts).
    v1_procs: Vec<PathBuf>,
}

impl Cgroups {
    /// The cgroup.procs files still to write: all but the cgroup2 one when
    /// the first child started there.
    fn procs_files(&self, in_v2: bool) -> Vec<&Path> {
        let v2 = self.v2_procs.as_deref().filter(|_| !in_v2);
        v2.into_iter()
            .chain(self.v1_procs.iter().map(PathBuf::as_path))
            .collect()
    }

    /// Paused (or being paused): cgroup.freeze asked for or cgroup.events
    /// reporting frozen (a frozen ancestor: the init in a sub-cgroup of its
    /// scope), or a v1 freezer not THAWED.
    fn frozen(&self) -> bool {
        let v2 = self
            .v2_procs
            .as_ref()
            .and_then(|p| p.parent())
            .is_some_and(|d| {
                let asked =
                    fs::read_to_string(d.join("cgroup.freeze")).is_ok_and(|t| t.trim() == "1");
                asked
                    || fs::read_to_string(d.join("cgroup.events"))
                        .is_ok_and(|t| t.lines().any(|l| l.trim() == "frozen 1"))
            });
        v2 || self.v1_procs.iter().any(|procs| {
            procs.parent().is_some_and(|d| {
                fs::read_to_string(d.join("freezer.state"))
                    .is_ok_and(|t| matches!(t.trim(), "FROZEN" | "FREEZING"))
            })
        })
    }
}

/// The cgroups `pid` is in (see [`Cgroups`]), found through /proc/PID/cgroup
/// and our mountinfo.
fn cgroups_of(pid: i32) -> Result<Cgroups> {
    let text = fs::read_to_string(format!("/proc/{pid}/cgroup"))
        .map_err(|e| Error::io(format!("reading /proc/{pid}/cgroup"), e))?;
    let mounts = fs::read_to_string("/proc/self/mountinfo")
        .map_err(|e| Error::io("reading /proc/self/mountinfo", e))?;
    let mut out = Cgroups {
        v2_dir: None,
        v2_procs: None,
        v1_procs: Vec::new(),
    };
    for line in text.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(_), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Some(mount) = hierarchy_mount(&mounts, ctrls) else {
            continue;
        };
        let dir = mount.join(path.trim_start_matches('/'));
        let procs = dir.join("cgroup.procs");
        if !procs.exists() {
            continue;
        }
        if ctrls.is_empty() {
            // Not openable (it went away meanwhile): the write will say so.
            out.v2_dir = File::options()
                .read(true)
                .custom_flags(libc::O_DIRECTORY | libc::O_CLOEXEC)
                .open(&dir)
                .ok();
            out.v2_procs = Some(procs);
        } else {
            out.v1_procs.push(procs);
        }
    }
    Ok(out)
}

/// Where the hierarchy with these controllers ("" = cgroup2) is mounted.
fn hierarchy_mount(mountinfo: &str, ctrls: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        let mut r = right.split_whitespace();
        let fstype = r.next()?;
        let super_opts = r.nth(1).unwrap_or("");
        let point = Path::new(left.split_whitespace().nth(4)?);
        let matches = match fstype {
            "cgroup2" => ctrls.is_empty(),
            "cgroup" => {
                let have: Vec<&str> = super_opts.split(',').collect();
                !ctrls.is_empty() && ctrls.split(',').all(|c| have.contains(&c))
            }
            _ => false,
        };
        matches.then(|| point.to_path_buf())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_hierarchies() {
        let mi = "30 25 0:26 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n\
                  31 25 0:27 / /sys/fs/cgroup/cpu,cpuacct rw - cgroup cgroup rw,cpu,cpuacct\n\
                  32 25 0:28 / /sys/fs/cgroup/systemd rw - cgroup cgroup rw,xattr,name=systemd\n";
        assert_eq!(
            hierarchy_mount(mi, ""),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        assert_eq!(
            hierarchy_mount(mi, "cpu,cpuacct"),
            Some(PathBuf::from("/sys/fs/cgroup/cpu,cpuacct"))
        );
        assert_eq!(
            hierarchy_mount(mi, "name=systemd"),
            Some(PathBuf::from("/sys/fs/cgroup/systemd"))
        );
        assert_eq!(hierarchy_mount(mi, "memory"), None);
    }
}
