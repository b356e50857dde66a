//! ExecSync: berthd's ExecContainerAndWait with our own pipes as the
//! process's stdout and stderr (options stdout_fd/stderr_fd: the streams
//! stay apart) — the exec and its code in one call — and KillExec(SIGKILL)
//! of the exec (its id chosen here) past the timeout.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::time::Duration;

use tokio::io::AsyncReadExt;
use zbus::zvariant::{Fd, Value};

use crate::api::*;
use crate::error::{CriError, Result};
use crate::state::Cri;

/// What ExecSync keeps of each stream (the kubelet's own cap on an exec
/// probe's output is far below: 16 MiB as containerd's).
const MAX_OUTPUT: u64 = 16 << 20;

/// A pipe, close-on-exec and blocking: (read end, write end).
pub fn raw_pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| CriError::Internal(format!("pipe2: {e}")))
}

/// Our end of a pipe made non-blocking for tokio. Only ours: O_NONBLOCK
/// belongs to the open file, and the process's end must stay blocking
/// (a `cat` reading a non-blocking stdin fails with EAGAIN).
pub fn ours_nonblocking(fd: &OwnedFd) -> Result<()> {
    use nix::fcntl::{fcntl, FcntlArg, OFlag};
    fcntl(
        std::os::fd::AsRawFd::as_raw_fd(fd),
        FcntlArg::F_SETFL(OFlag::O_NONBLOCK),
    )
    .map(|_| ())
    .map_err(|e| CriError::Internal(format!("O_NONBLOCK: {e}")))
}

/// A pipe: the read end (ours, async) and the write end (for berthd).
pub fn pipe() -> Result<(tokio::net::unix::pipe::Receiver, OwnedFd)> {
    let (r, w) = raw_pipe()?;
    ours_nonblocking(&r)?;
    let r = tokio::net::unix::pipe::Receiver::from_owned_fd(r)
        .map_err(|e| CriError::Internal(e.to_string()))?;
    Ok((r, w))
}

/// An fd as an `h` option value (the write end goes to berthd).
pub fn fd_option(fd: OwnedFd) -> Value<'static> {
    Value::from(Fd::from(fd))
}

/// A stream to its end, the first MAX_OUTPUT bytes kept: the rest is read
/// and dropped, so a chatty process is never blocked on a full pipe.
async fn read_capped(r: &mut tokio::net::unix::pipe::Receiver) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n @ 1..) = r.read(&mut buf).await {
        let room = (MAX_OUTPUT as usize).saturating_sub(kept.len());
        kept.extend_from_slice(&buf[..n.min(room)]);
    }
    kept
}

/// An exec id of ExecSync's: berth-cri's own pid and a count, apart from
/// berthd's generated `exec<µs>.<n>`.
fn sync_exec_id() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros())
        .unwrap_or(0);
    format!(
        "sync{now}.{}.{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// ExecSync: the command's stdout and stderr apart, and its exit code; past
/// `timeout` seconds the process is SIGKILLed and DeadlineExceeded returned.
pub async fn exec_sync(cri: &Cri, req: ExecSyncRequest) -> Result<ExecSyncResponse> {
    crate::containers::get(cri, &req.container_id)?;
    if req.cmd.is_empty() {
        return Err(CriError::InvalidArgument("cmd is required".into()));
    }
    let m = cri.manager().await?;
    let process = serde_json::json!({ "args": req.cmd }).to_string();
    let (mut out_r, out_w) = pipe()?;
    let (mut err_r, err_w) = pipe()?;
    let mut o: HashMap<&str, Value> = HashMap::new();
    o.insert("stdout_fd", fd_option(out_w));
    o.insert("stderr_fd", fd_option(err_w));
    let id = &req.container_id;
    // Ours, so a timed-out exec can be killed while the call still waits.
    let exec_id = sync_exec_id();
    o.insert("id", Value::from(exec_id.clone()));
    // The write ends go with the options: once sent, only the process
    // holds them, so EOF comes when it (and its children) are done (or
    // when berthd drops them, the exec refused).
    let done = async {
        let output = async { tokio::join!(read_capped(&mut out_r), read_capped(&mut err_r)) };
        let ((out, err), ran) = tokio::join!(output, m.exec_container_and_wait(id, &process, o));
        let (_, code, _) = ran?;
        Ok::<_, CriError>((out, err, code))
    };
    let limit = match req.timeout {
        t if t > 0 => Duration::from_secs(t as u64),
        _ => Duration::from_secs(24 * 3600),
    };
    match tokio::time::timeout(limit, done).await {
        Ok(r) => {
            let (stdout, stderr, exit_code) = r?;
            Ok(ExecSyncResponse {
                stdout,
                stderr,
                exit_code,
            })
        }
        Err(_) => {
            // Nothing left behind: the process goes, and its exit is
            // waited for (its shim records it) before the answer.
            match m.kill_exec(id, &exec_id, libc::SIGKILL).await {
                Ok(()) => {
                    let _ = tokio::time::timeout(Duration::from_secs(5), m.wait_exec(id, &exec_id))
                        .await;
                }
                Err(e) => {
                    tracing::warn!(container = %id, exec = %exec_id, "killing a timed-out exec: {e}")
                }
            }
            Err(CriError::DeadlineExceeded(format!(
                "command {:?} timed out after {}s",
                req.cmd, req.timeout
            )))
        }
    }
}
