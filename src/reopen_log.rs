//! ReopenContainerLog: the container's monitor opens its CRI log file
//! (CreateContainer's `log_path`) anew after the kubelet renamed it.

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::init_calls;

impl Daemon {
    /// ReopenContainerLog: SIGUSR1 to the container's monitor (the shim's
    /// pid, checked against its start time so a reused pid is never hit).
    pub fn reopen_log(&self, id: &str) -> Result<()> {
        let rec = self.get(id)?;
        let alive = rec.shim_pid != 0
            && init_calls::process_start_time(rec.shim_pid) == Some(rec.shim_start);
        if !alive {
            return Err(Error::FailedPrecondition(format!(
                "container {id} has no monitor (it exited): no log to reopen"
            )));
        }
        // Only the monitor handles SIGUSR1: the shim it re-executes from
        // would die of it (the default action), in the moments before.
        let comm =
            std::fs::read_to_string(format!("/proc/{}/comm", rec.shim_pid)).unwrap_or_default();
        if comm.trim() != "berth-monitor" {
            return Err(Error::FailedPrecondition(format!(
                "the monitor of {id} is not running yet: try again"
            )));
        }
        let pid = nix::unistd::Pid::from_raw(rec.shim_pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGUSR1)
            .map_err(|e| Error::Internal(format!("signalling the monitor of {id}: {e}")))
    }
}
