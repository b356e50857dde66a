//! Watching shims: a pidfd per shim becomes readable when the shim exits
//! (no polling, no pid-reuse race). Then the shim's exit record says how the
//! container ended; no record means the shim itself died.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;

use berth_proto::{ExitRecord, RecordError, ShimReport};

use crate::daemon::Daemon;
use crate::lifecycle::Verb;

/// A created container's (or an exec's) two processes, as its shim reported
/// them: the init (an exec's process) and the shim, with /proc start times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Processes {
    pub pid: u32,
    pub pid_start: u64,
    pub shim_pid: u32,
    pub shim_start: u64,
}

impl Processes {
    /// The processes a shim's report `line` names, or the failure it
    /// carries as berthd's error of its kind. A report without start times
    /// (a shim from before reports carried them: an exec server left
    /// running across an upgrade) has them read from /proc here. One with
    /// the shim's says all there is: an exec's leaves its process's 0
    /// (nobody needs it, and reading it could wait for that process's
    /// execve).
    pub fn from_report(line: &str) -> crate::error::Result<Processes> {
        let read = |pid: u32| crate::init_calls::process_start_time(pid).unwrap_or(0);
        match ShimReport::parse(line) {
            Ok(ShimReport::Created {
                init_pid,
                shim_pid,
                init_start,
                shim_start,
            }) => {
                let (pid_start, shim_start) = match shim_start {
                    0 => (read(init_pid), read(shim_pid)),
                    said => (init_start, said),
                };
                Ok(Processes {
                    pid: init_pid,
                    pid_start,
                    shim_pid,
                    shim_start,
                })
            }
            Ok(ShimReport::Failed { error, kind }) => {
                Err(crate::error::Error::of_kind(kind, error))
            }
            Err(e) => Err(crate::error::Error::Internal(e.to_string())),
        }
    }
}

/// Opens a pidfd for `pid` if it is still the process that started at `start`.
fn pidfd_for(pid: u32, start: u64) -> Option<OwnedFd> {
    // SAFETY: pidfd_open with integer arguments; the fd is owned right after.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid as libc::c_int, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: a fresh fd we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    // Checked after opening: if the start time still matches, the pidfd
    // refers to our shim, whatever happens to the pid later.
    (crate::init_calls::process_start_time(pid) == Some(start)).then_some(fd)
}

/// Checks at a time (see checked_pidfd).
static CHECKS: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);

/// pidfd_for, off the executor: right after a create the shim is exec'ing
/// into berth-monitor, and reading its /proc stat waits for that exec. Two
/// at a time, so a burst of watches (a restart re-attaching 1000
/// containers) does not start a blocking-pool thread each.
async fn checked_pidfd(pid: u32, start: u64) -> Option<OwnedFd> {
    let _turn = CHECKS.acquire().await.ok()?;
    tokio::task::spawn_blocking(move || pidfd_for(pid, start))
        .await
        .ok()
        .flatten()
}

/// Resolves when the process (`pid` started at `start`) has exited — at once
/// if it already has or is not that process any more.
pub async fn gone(pid: u32, start: u64) {
    if let Some(fd) = checked_pidfd(pid, start).await {
        // SAFETY: the AsyncFd owns the pidfd (moved in) until it is dropped.
        if let Ok(afd) = unsafe { AsyncFd::register(fd) } {
            let _ = afd.readable().await;
        }
    }
}

/// The container's end as its gone shim left it: (code, signal, reason).
/// With no exit record the shim itself died; a record that cannot be read is
/// recorded as such, with why, rather than read as an exit of 0.
pub fn read_exit(run_dir: &Path, id: &str) -> (i32, i32, String) {
    let (_, exit) = berth_proto::record_names(None);
    match berth_proto::read::<ExitRecord>(&run_dir.join(id).join(exit)) {
        Ok(r) if r.oom_killed => (r.exit_code, r.exit_signal, OOM_KILLED.into()),
        Ok(r) => (r.exit_code, r.exit_signal, EXITED.into()),
        Err(RecordError::Missing { .. }) => (-1, 0, SHIM_DIED.into()),
        Err(e) => (-1, 0, format!("{SHIM_DIED}: {e}")),
    }
}

/// ExitReason: the shim saw the exit and recorded it.
pub const EXITED: &str = "exited";
/// ExitReason: as `exited`, and the kernel's OOM killer killed processes
/// of the container (its scope's memory.events oom_kill grew).
pub const OOM_KILLED: &str = "oom-killed";
/// ExitReason: the shim went without an exit record (ExitCode -1).
pub const SHIM_DIED: &str = "shim died";

/// Watches the shim of `id` until it exits, then records the container's exit
/// and lets the bus know through `on_exit` — both under the container's gate,
/// so a Start's announcement comes before and a Delete's after.
pub fn watch<F, A>(daemon: Arc<Daemon>, id: String, shim_pid: u32, shim_start: u64, on_exit: F)
where
    F: FnOnce(Arc<Daemon>, String) -> A + Send + 'static,
    A: std::future::Future<Output = ()> + Send,
{
    tokio::spawn(async move {
        gone(shim_pid, shim_start).await;
        let _announcing = daemon.gate(&id).await;
        let (code, signal, reason) = read_exit(&daemon.run_dir, &id);
        match daemon.get(&id) {
            Ok(rec) if crate::lifecycle::transition(rec.status, Verb::Exit).is_ok() => {
                if let Err(e) = daemon.record_exit(&id, code, signal, &reason).await {
                    tracing::error!(container = %id, "recording the exit: {e:?}");
                    return;
                }
                tracing::info!(container = %id, code, signal, reason, "container exited");
                on_exit(daemon.clone(), id).await;
            }
            _ => {}
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_times_reported_are_kept_and_missing_ones_read() {
        let me = std::process::id();
        let mine = crate::init_calls::process_start_time(me).unwrap();
        let said = format!(r#"{{"init_pid":{me},"shim_pid":{me},"init_start":7,"shim_start":8}}"#);
        let said = Processes::from_report(&said).unwrap();
        assert_eq!((said.pid, said.pid_start, said.shim_start), (me, 7, 8));
        let unsaid = format!(r#"{{"init_pid":{me},"shim_pid":{me}}}"#);
        let unsaid = Processes::from_report(&unsaid).unwrap();
        assert_eq!((unsaid.pid_start, unsaid.shim_start), (mine, mine));
        // An exec's shim: its process's start is not read.
        let exec = format!(r#"{{"init_pid":{me},"shim_pid":{me},"init_start":0,"shim_start":8}}"#);
        let exec = Processes::from_report(&exec).unwrap();
        assert_eq!((exec.pid_start, exec.shim_start), (0, 8));
    }

    #[test]
    fn a_failed_report_is_its_kind_of_error() {
        let line = r#"{"error":"no rootfs","kind":"InvalidArgument"}"#;
        let e = Processes::from_report(line).unwrap_err();
        assert!(
            matches!(e, crate::error::Error::InvalidArgument(ref m) if m == "no rootfs"),
            "{e:?}"
        );
        assert!(matches!(
            Processes::from_report("garbage"),
            Err(crate::error::Error::Internal(_))
        ));
    }
}
