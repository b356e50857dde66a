//! Watching shims: a pidfd per shim becomes readable when the shim exits
//! (no polling, no pid-reuse race). Then the shim's exit record says how the
//! container ended; no record means the shim itself died.

use std::os::fd::{FromRawFd, OwnedFd};
use std::path::Path;
use std::sync::Arc;

use tokio::io::unix::AsyncFd;

use crate::daemon::Daemon;
use crate::lifecycle::Verb;

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
    (berth_init::container::process_start_time(pid as i32) == Some(start)).then_some(fd)
}

/// Resolves when the process (`pid` started at `start`) has exited — at once
/// if it already has or is not that process any more.
pub async fn gone(pid: u32, start: u64) {
    if let Some(fd) = pidfd_for(pid, start) {
        // SAFETY: the AsyncFd owns the pidfd (moved in) until it is dropped.
        if let Ok(afd) = unsafe { AsyncFd::register(fd) } {
            let _ = afd.readable().await;
        }
    }
}

/// The exit record the shim wrote: (code, signal).
pub fn read_exit(run_dir: &Path, id: &str) -> Option<(i32, i32)> {
    read_exit_file(&run_dir.join(id).join("exit.json"))
}

pub fn read_exit_file(path: &Path) -> Option<(i32, i32)> {
    let text = std::fs::read_to_string(path).ok()?;
    let v: serde_json::Value = serde_json::from_str(&text).ok()?;
    Some((
        v["exit_code"].as_i64()? as i32,
        v["exit_signal"].as_i64()? as i32,
    ))
}

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
        let outcome = read_exit(&daemon.run_dir, &id);
        let (code, signal, reason) = match outcome {
            Some((c, s)) => (c, s, "exited"),
            None => (-1, 0, "shim died"),
        };
        match daemon.get(&id) {
            Ok(rec) if crate::lifecycle::transition(rec.status, Verb::Exit).is_ok() => {
                if let Err(e) = daemon.record_exit(&id, code, signal, reason) {
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
