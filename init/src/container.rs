//! A container on disk (`<root>/<id>/state.json` + `exec.fifo`) and the verbs
//! that act on an existing one: state, start, kill, pause, resume, delete.
//!
//! Status is derived, never stored: the init is alive (same pid *and* same
//! start time, so a reused pid is not mistaken for ours) and the FIFO still
//! exists → created; alive and frozen → paused; alive → running; else stopped.

use std::collections::BTreeMap;
use std::fs;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::Signal;
use serde::{Deserialize, Serialize};

use crate::error::{validate_id, Error, Result};
use crate::hooks::{self, OciState, Phase};

pub const STATE_FILE: &str = "state.json";
pub const FIFO: &str = "exec.fifo";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// What `create` records about a container.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    pub id: String,
    pub oci_version: String,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub pid: i32,
    /// /proc/<pid>/stat field 22: tells our init from a process that reused its pid.
    pub pid_start: u64,
    /// RFC 3339, UTC.
    pub created: String,
    pub systemd_cgroup: bool,
    /// Unit name (systemd) or cgroup path (cgroupfs), as the manager reported it.
    pub cgroup: Option<String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// Written while `create` still runs (its first record, so a creator
    /// killed mid-way leaves something `delete --force` finds): the
    /// container is `creating` until the final record clears it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub creating: bool,
}

/// A /proc file whole. std's read_to_string sizes its buffer by the file's
/// length, which /proc reports as 0: it reads 32 bytes, then 64, 128, …
/// (six reads for a stat line); one page takes it in one read and a last
/// one that finds the end.
pub fn read_proc(path: &str) -> std::io::Result<String> {
    use std::io::Read;
    let mut text = String::with_capacity(4096);
    fs::File::open(path)?.read_to_string(&mut text)?;
    Ok(text)
}

/// The start time of a live, non-zombie process, or None.
pub fn process_start_time(pid: i32) -> Option<u64> {
    let stat = read_proc(&format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces and parentheses: split after the last ')'.
    let rest = stat.rsplit_once(')')?.1;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    if fields.first() == Some(&"Z") || fields.first() == Some(&"X") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

pub fn dir(root: &Path, id: &str) -> PathBuf {
    root.join(id)
}

impl Record {
    pub fn load(root: &Path, id: &str) -> Result<Record> {
        validate_id(id)?;
        let path = dir(root, id).join(STATE_FILE);
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(Error::NotFound(id.into()))
            }
            Err(e) => return Err(Error::io(format!("reading {}", path.display()), e)),
        };
        serde_json::from_str(&text).map_err(|e| Error::io(format!("parsing {}", path.display()), e))
    }

    /// Written to a temporary file and renamed: a crash never leaves half a record.
    pub fn save(&self, root: &Path) -> Result<()> {
        let d = dir(root, &self.id);
        let tmp = d.join(".state.json.tmp");
        let json = serde_json::to_vec_pretty(self).map_err(|e| Error::io("encoding state", e))?;
        // Root only: the record names the bundle and the init's pid.
        fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, &json))
            .map_err(|e| Error::io(format!("writing {}", tmp.display()), e))?;
        fs::rename(&tmp, d.join(STATE_FILE))
            .map_err(|e| Error::io(format!("renaming {}", tmp.display()), e))
    }

    pub fn alive(&self) -> bool {
        process_start_time(self.pid) == Some(self.pid_start)
    }

    pub fn cgroup_manager(&self) -> Result<Option<Box<dyn crate::cgroups::CgroupManager>>> {
        match &self.cgroup {
            Some(path) => Ok(Some(crate::cgroups::reopen(self.systemd_cgroup, path)?)),
            None => Ok(None),
        }
    }

    pub fn status(&self, root: &Path) -> Status {
        if !self.alive() {
            return Status::Stopped;
        }
        if self.creating {
            return Status::Creating;
        }
        if dir(root, &self.id).join(FIFO).exists() {
            return Status::Created;
        }
        let frozen = self
            .cgroup_manager()
            .ok()
            .flatten()
            .and_then(|m| m.is_frozen().ok())
            .unwrap_or(false);
        if frozen {
            Status::Paused
        } else {
            Status::Running
        }
    }

    pub fn oci_state(&self, status: Status) -> OciState {
        OciState {
            oci_version: self.oci_version.clone(),
            id: self.id.clone(),
            status: status.to_string(),
            pid: (status != Status::Stopped).then_some(self.pid),
            bundle: self.bundle.display().to_string(),
            annotations: self.annotations.clone(),
        }
    }

    /// config.json's `hooks` (None if it has none or cannot be read): the
    /// rest of the spec — a seccomp profile of hundreds of syscall names —
    /// is skipped by the parser, not built (it was, on every start and
    /// delete).
    fn spec_hooks(&self) -> Option<oci_spec::runtime::Hooks> {
        #[derive(serde::Deserialize)]
        struct Spec {
            hooks: Option<oci_spec::runtime::Hooks>,
        }
        let text = fs::read(self.bundle.join("config.json")).ok()?;
        serde_json::from_slice::<Spec>(&text).ok()?.hooks
    }
}

fn wrong(id: &str, op: &'static str, status: Status) -> Error {
    Error::WrongState {
        id: id.into(),
        op,
        status,
    }
}

/// Lets the init execve: opens the FIFO for reading and takes its one byte.
/// Returns the warnings of failed poststart hooks (the spec says: warn, go on).
pub fn start(root: &Path, id: &str) -> Result<Vec<String>> {
    let rec = Record::load(root, id)?;
    match rec.status(root) {
        Status::Created => {}
        s => return Err(wrong(id, "start", s)),
    }
    let fifo_path = dir(root, id).join(FIFO);
    // Non-blocking open: a dead init must give an error, not a hang.
    let mut fifo = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&fifo_path)
        .map_err(|e| Error::io(format!("opening {}", fifo_path.display()), e))?;
    // One byte: the init passed its startContainer hooks. Then EOF: its
    // write end closed on execve (or it died), so the process now runs —
    // unless the init wrote why it failed instead (a hook, seccomp, execve).
    let mut got = Vec::new();
    loop {
        let mut fds = [PollFd::new(fifo.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(100u16)) {
            Ok(n) if n > 0 => {
                let mut buf = [0u8; 4096];
                match fifo.read(&mut buf) {
                    Ok(0) if !got.is_empty() => break,
                    Ok(n) => got.extend_from_slice(&buf[..n]),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(Error::io("reading the exec fifo", e)),
                }
            }
            Ok(_) | Err(nix::Error::EINTR) => {}
            Err(e) => return Err(Error::io("polling the exec fifo", e)),
        }
        if got.is_empty() && !rec.alive() {
            return Err(Error::Init(
                "the container init exited before it could be started".into(),
            ));
        }
    }
    if got != crate::child::START_BYTE {
        let text = got.strip_prefix(crate::child::START_BYTE).unwrap_or(&got);
        let failure = serde_json::from_slice(text).unwrap_or_else(|_| {
            crate::error::ChildFailure::Setup(String::from_utf8_lossy(text).into_owned())
        });
        let _ = fs::remove_file(&fifo_path);
        return Err(Error::of_child(failure, ""));
    }
    fs::remove_file(&fifo_path)
        .map_err(|e| Error::io(format!("removing {}", fifo_path.display()), e))?;
    Ok(run_hooks_warn(&rec, Phase::Poststart, Status::Running))
}

fn run_hooks_warn(rec: &Record, phase: Phase, status: Status) -> Vec<String> {
    let list = hooks::hooks_for(rec.spec_hooks().as_ref(), phase);
    match hooks::run(&list, phase, &rec.oci_state(status)) {
        Ok(()) => vec![],
        Err(e) => vec![e.to_string()],
    }
}

/// pidfd_open + a start-time check + pidfd_send_signal: the signal reaches our
/// init or nobody, even if its pid was reused meanwhile.
pub fn signal_init(rec: &Record, sig: Signal) -> Result<()> {
    // SAFETY: pidfd_open with integer arguments; the fd is owned right after.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, rec.pid, 0) };
    if fd < 0 {
        return Err(Error::NotFound(rec.id.clone()));
    }
    // SAFETY: fd is a fresh pidfd we own.
    let pidfd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    if !rec.alive() {
        return Err(wrong(&rec.id, "kill", Status::Stopped));
    }
    // SAFETY: pidfd_send_signal on our pidfd with no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            pidfd.as_raw_fd(),
            sig as i32,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    nix::Error::result(rc)
        .map(|_| ())
        .map_err(|e| Error::io(format!("signalling container {}", rec.id), e))
}

pub fn kill(root: &Path, id: &str, sig: Signal, all: bool) -> Result<()> {
    let rec = Record::load(root, id)?;
    let status = rec.status(root);
    // A creating container is not there yet for kill (runc: it does not
    // exist until create returns); delete --force takes it back.
    if matches!(status, Status::Stopped | Status::Creating) {
        return Err(wrong(id, "kill", status));
    }
    if all {
        if let Some(mgr) = rec.cgroup_manager()? {
            for pid in mgr.pids()? {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig);
            }
            return Ok(());
        }
    }
    signal_init(&rec, sig)
}

pub fn pause(root: &Path, id: &str) -> Result<()> {
    with_cgroup(root, id, "pause", Status::Running, |m| m.freeze())
}

pub fn resume(root: &Path, id: &str) -> Result<()> {
    with_cgroup(root, id, "resume", Status::Paused, |m| m.thaw())
}

/// Applies `resources` to the cgroup of a created, running or paused
/// container (`runc update`): only the settings given change, and a setting
/// whose controller is missing is refused before anything is set.
pub fn update(root: &Path, id: &str, resources: &oci_spec::runtime::LinuxResources) -> Result<()> {
    let rec = Record::load(root, id)?;
    let status = rec.status(root);
    if !matches!(status, Status::Created | Status::Running | Status::Paused) {
        return Err(wrong(id, "update", status));
    }
    let mut mgr = rec
        .cgroup_manager()?
        .ok_or_else(|| Error::InvalidArgument(format!("container {id} has no cgroup to update")))?;
    Ok(mgr.update(resources)?)
}

/// Runs `act` on the container's cgroup if the container is in status `want`.
fn with_cgroup(
    root: &Path,
    id: &str,
    op: &'static str,
    want: Status,
    act: impl FnOnce(&dyn crate::cgroups::CgroupManager) -> crate::cgroups::Result<()>,
) -> Result<()> {
    let rec = Record::load(root, id)?;
    let status = rec.status(root);
    if status != want {
        return Err(wrong(id, op, status));
    }
    let mgr = rec
        .cgroup_manager()?
        .ok_or_else(|| Error::InvalidArgument(format!("container {id} has no cgroup to {op}")))?;
    Ok(act(mgr.as_ref())?)
}

/// Removes a container. A created one is killed first (it never ran); a
/// running or paused one only with `force`. Returns poststop hook warnings.
pub fn delete(root: &Path, id: &str, force: bool) -> Result<Vec<String>> {
    delete_with_scopes(root, id, force, &[])
}

/// [`delete`], and also removes the systemd scopes `also` (its shims' scopes,
/// which are empty once the shims exited but which systemd collects only
/// some time later), together with the container's own scope: on return the
/// names are free for a container of the same id.
pub fn delete_with_scopes(
    root: &Path,
    id: &str,
    force: bool,
    also: &[String],
) -> Result<Vec<String>> {
    let rec = match Record::load(root, id) {
        // A creator killed before its first record leaves only the state
        // directory (nothing else is made before the record): --force
        // removes it, so the id can be used again.
        Err(Error::NotFound(_)) if force && dir(root, id).is_dir() => {
            return remove_state_dir(&dir(root, id)).map(|()| vec![]);
        }
        other => other?,
    };
    let status = rec.status(root);
    match status {
        Status::Stopped | Status::Created => {}
        Status::Running | Status::Paused | Status::Creating if force => {}
        s => return Err(wrong(id, "delete", s)),
    }
    let mut mgr = rec.cgroup_manager()?;
    if status != Status::Stopped {
        if let Some(m) = &mgr {
            // A frozen process cannot die until thawed.
            let _ = m.thaw();
            for pid in m.pids().unwrap_or_default() {
                let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGKILL);
            }
        }
        let _ = signal_init(&rec, Signal::SIGKILL);
        let deadline = Instant::now() + Duration::from_secs(10);
        while rec.alive() {
            if Instant::now() > deadline {
                return Err(Error::Init(format!(
                    "container {id} did not die after SIGKILL"
                )));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    // systemd scopes go together, in one batch of calls (see destroy_units).
    let mut scopes = Vec::new();
    match mgr.as_mut() {
        Some(m) if rec.systemd_cgroup => scopes.push(m.path()),
        Some(m) => m.destroy()?,
        None => {}
    }
    scopes.extend(also.iter().cloned());
    crate::cgroups::systemd::destroy_scopes(&scopes)?;
    let warnings = run_hooks_warn(&rec, Phase::Poststop, Status::Stopped);
    remove_state_dir(&dir(root, id))?;
    Ok(warnings)
}

/// Removes a container's state directory. An exec's shim may still write
/// its exit record as the container's processes die: a file made during the
/// removal (ENOTEMPTY) goes on the next pass. Gone already (a concurrent
/// delete or a failed create's own clean-up) is what we wanted.
fn remove_state_dir(d: &Path) -> Result<()> {
    let mut passes = 0;
    loop {
        match fs::remove_dir_all(d) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::DirectoryNotEmpty && passes < 50 => {
                passes += 1;
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(Error::io(format!("removing {}", d.display()), e)),
        }
    }
}

/// Ids of the containers under `root`, sorted.
pub fn list(root: &Path) -> Vec<String> {
    let mut ids: Vec<String> = fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids
}
