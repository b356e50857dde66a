//! KillExec: a signal to one exec'd process. The process is found through
//! its shim's record and signalled through a pidfd, taken while the shim —
//! its parent, the one that would reap it and free the pid — is alive and
//! checked to be its parent: a pid reused by another process is never hit.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use berth_proto::{ExitRecord, RecordError, ShimRecord};

use crate::daemon::Daemon;
use crate::error::{Error, Result};

/// Why an exec could not be signalled (each becomes a D-Bus error).
#[derive(Debug, thiserror::Error)]
pub enum KillExecError {
    #[error("no exec {exec} in container {id}")]
    NoExec { id: String, exec: String },
    #[error("exec {exec} in container {id} has exited")]
    Exited { id: String, exec: String },
    #[error("signal {0} is not a signal (1-64)")]
    BadSignal(i32),
    #[error("signalling exec {exec}: {err}")]
    Signal { exec: String, err: std::io::Error },
}

impl From<KillExecError> for Error {
    fn from(e: KillExecError) -> Self {
        match e {
            KillExecError::NoExec { .. } => Error::NotFound(e.to_string()),
            KillExecError::Exited { .. } => Error::FailedPrecondition(e.to_string()),
            KillExecError::BadSignal(_) => Error::InvalidArgument(e.to_string()),
            KillExecError::Signal { .. } => Error::Internal(e.to_string()),
        }
    }
}

impl Daemon {
    /// Sends `signal` to exec `exec_id`'s process in container `id`.
    pub fn kill_exec(&self, id: &str, exec_id: &str, signal: i32) -> Result<()> {
        // Before the id becomes part of a path.
        crate::ids::check_exec(exec_id)?;
        self.get(id)?;
        if !(1..=64).contains(&signal) {
            return Err(KillExecError::BadSignal(signal).into());
        }
        let no_exec = || KillExecError::NoExec {
            id: id.into(),
            exec: exec_id.into(),
        };
        if self.store.exec(id, exec_id)?.is_none() {
            return Err(no_exec().into());
        }
        Ok(signal_exec(self, id, exec_id, signal)?)
    }
}

/// Signals the process of exec `exec_id`, found through its shim's record
/// (the shim's pid and start time, the process's pid); Exited if it (or its
/// shim) is gone.
pub fn signal_exec(
    daemon: &Daemon,
    id: &str,
    exec_id: &str,
    signal: i32,
) -> std::result::Result<(), KillExecError> {
    let exited = || KillExecError::Exited {
        id: id.into(),
        exec: exec_id.into(),
    };
    let dir = daemon.run_dir.join(id);
    let (shim_json, exit_json) = berth_proto::record_names(Some(exec_id));
    let shim = match berth_proto::read::<ShimRecord>(&dir.join(shim_json)) {
        Ok(s) => s,
        Err(_) => return Err(exited()),
    };
    // SAFETY: pidfd_open with integer arguments; the fd is owned at once.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, shim.init_pid as libc::c_int, 0) };
    if fd < 0 {
        return Err(exited());
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Checked after opening: the shim alive and no exit recorded means it
    // has not reaped the process, so the pid is still the process's; and
    // its parent must be that shim (the subreaper of every exec).
    let shim_alive = crate::init_calls::process_start_time(shim.pid) == Some(shim.start_time);
    let recorded = !matches!(
        berth_proto::read::<ExitRecord>(&dir.join(exit_json)),
        Err(RecordError::Missing { .. })
    );
    if !shim_alive || recorded || parent_of(shim.init_pid) != Some(shim.pid) {
        return Err(exited());
    }
    // SAFETY: pidfd_send_signal on our pidfd, no siginfo.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_pidfd_send_signal,
            fd.as_raw_fd(),
            signal,
            std::ptr::null::<libc::siginfo_t>(),
            0,
        )
    };
    match rc {
        0 => Ok(()),
        _ => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::ESRCH) => Err(exited()),
            err => Err(KillExecError::Signal {
                exec: exec_id.into(),
                err,
            }),
        },
    }
}

/// The parent pid of `pid` (/proc/PID/status's PPid).
fn parent_of(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("PPid:"))
        .and_then(|v| v.trim().parse().ok())
}
