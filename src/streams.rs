//! File descriptors berthd hands to callers over D-Bus (type `h`), so a
//! client needs no access to /run/berth or the journal of its own:
//! - attach: a connected stream to a shim's attach socket (output out, input
//!   in), like conmon's attach;
//! - logs: the read end of a pipe fed by `journalctl` on the container's
//!   journal fields (CONTAINER_ID_FULL), optionally following.

use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::options::get;

/// `<run>/<id>/attach.sock`, or `exec-<exec id>.attach.sock` for an exec.
fn socket_name(exec_id: &str, what: &str) -> String {
    if exec_id.is_empty() {
        what.to_string()
    } else {
        format!("exec-{exec_id}.{what}")
    }
}

/// Connects to the attach socket of the container (exec_id "") or of an exec
/// started with the `attach` option.
pub fn attach(run_dir: &Path, id: &str, exec_id: &str) -> Result<OwnedFd> {
    if !exec_id.is_empty() {
        crate::ids::check_exec(exec_id)?;
    }
    let path = run_dir.join(id).join(socket_name(exec_id, "attach.sock"));
    connect(&path).map_err(|e| match e {
        Error::NotFound(_) if exec_id.is_empty() => Error::NotFound(format!(
            "container {id} has no attach socket (its shim has exited)"
        )),
        Error::NotFound(_) => Error::NotFound(format!(
            "exec {exec_id} of {id} has no attach socket (not started with attach, or done)"
        )),
        e => e,
    })
}

/// Connects to the container's split attach socket (output framed per
/// stream). A monitor started before it existed has none: NotFound.
pub fn attach_split(run_dir: &Path, id: &str) -> Result<OwnedFd> {
    let path = run_dir.join(id).join("attach-split.sock");
    connect(&path).map_err(|e| match e {
        Error::NotFound(_) => Error::NotFound(format!(
            "container {id} has no split attach socket (its shim has exited, or is older)"
        )),
        e => e,
    })
}

fn connect(path: &Path) -> Result<OwnedFd> {
    match UnixStream::connect(path) {
        Ok(s) => Ok(s.into()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(Error::NotFound(path.display().to_string()))
        }
        Err(e) => Err(Error::FailedPrecondition(format!(
            "attaching to {}: {e}",
            path.display()
        ))),
    }
}

/// Sets the terminal size of the container's (or an exec's) pty through the
/// shim's ctl FIFO (conmon's `1 <rows> <cols>` line).
pub fn resize(run_dir: &Path, id: &str, exec_id: &str, rows: u16, cols: u16) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    if !exec_id.is_empty() {
        crate::ids::check_exec(exec_id)?;
    }
    let path = run_dir.join(id).join(socket_name(exec_id, "ctl"));
    let mut ctl = std::fs::OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
        .open(&path)
        .map_err(|e| Error::FailedPrecondition(format!("{}: {e}", path.display())))?;
    ctl.write_all(format!("1 {rows} {cols}\n").as_bytes())
        .map_err(|e| Error::Internal(format!("{}: {e}", path.display())))
}

/// Options of GetLogs: `follow` (b), `tail` (u: last N lines; default all),
/// `since` / `until` (t: µs since the epoch), `timestamps` (b: each line
/// begins with its journal time, ISO 8601 with µs).
#[derive(Debug, Default)]
pub struct LogsRequest {
    pub follow: bool,
    pub tail: Option<u32>,
    pub since: Option<u64>,
    pub until: Option<u64>,
    pub timestamps: bool,
}

impl LogsRequest {
    pub fn parse(
        options: &std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
    ) -> Result<LogsRequest> {
        let mut r = LogsRequest::default();
        for (key, value) in options {
            match key.as_str() {
                "follow" => r.follow = get(key, value, "b")?,
                "tail" => r.tail = Some(get(key, value, "u")?),
                "since" => r.since = Some(get(key, value, "t")?),
                "until" => r.until = Some(get(key, value, "t")?),
                "timestamps" => r.timestamps = get(key, value, "b")?,
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown option {other:?} (known: follow, tail, since, until, timestamps)"
                    )))
                }
            }
        }
        Ok(r)
    }
}

/// Starts journalctl on the container's entries, writing the messages into a
/// pipe whose read end is returned. A follower ends when the reader closes
/// its end, or (after a second for the last lines) when the container stops.
pub fn logs(daemon: &Arc<Daemon>, id: &str, req: &LogsRequest) -> Result<OwnedFd> {
    daemon.get(id)?;
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| Error::Internal(format!("pipe: {e}")))?;
    let watch = write
        .try_clone()
        .map_err(|e| Error::Internal(format!("dup: {e}")))?;
    let mut cmd = tokio::process::Command::new("journalctl");
    // short-iso-precise adds "host ident[pid]: " after the time; berthctl
    // keeps the time and the message (journalctl has no time-only format).
    let output = if req.timestamps {
        "--output=short-iso-precise"
    } else {
        "--output=cat"
    };
    cmd.args(["--no-pager", "--quiet", output])
        .arg(format!("CONTAINER_ID_FULL={id}"))
        // The container's own output: its execs log as `<id>.exec`.
        .arg(format!("SYSLOG_IDENTIFIER={id}"));
    match req.tail {
        Some(n) => cmd.arg(format!("--lines={n}")),
        None => cmd.arg("--lines=all"),
    };
    if req.follow {
        cmd.arg("--follow");
    }
    // systemd.time(7): "@" then seconds since the epoch, fractions allowed.
    let at = |us: u64| format!("@{}.{:06}", us / 1_000_000, us % 1_000_000);
    if let Some(us) = req.since {
        cmd.arg(format!("--since={}", at(us)));
    }
    if let Some(us) = req.until {
        cmd.arg(format!("--until={}", at(us)));
    }
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::from(write))
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| Error::Internal(format!("running journalctl: {e}")))?;
    let (daemon, id, follow) = (daemon.clone(), id.to_string(), req.follow);
    tokio::spawn(async move {
        if follow {
            tokio::select! {
                _ = child.wait() => {}
                _ = reader_gone(watch) => {}
                _ = async {
                    let _ = daemon.wait(&id).await;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                } => {}
            }
            // Our own child, by its handle: never a pid we did not start.
            let _ = child.start_kill();
        } else {
            drop(watch);
        }
        let _ = child.wait().await;
    });
    Ok(read)
}

/// Resolves once the read end of the pipe `write` belongs to is closed (the
/// kernel reports EPOLLERR on the write end). Dropping the future closes
/// `write`, so the reader sees EOF once journalctl is gone too.
async fn reader_gone(write: OwnedFd) {
    use tokio::io::unix::AsyncFd;
    use tokio::io::Interest;
    // SAFETY: an OwnedFd, moved in: open and the same file until dropped.
    match unsafe { AsyncFd::register_with_interest(write, Interest::ERROR) } {
        Ok(fd) => {
            let _ = fd.ready(Interest::ERROR).await;
        }
        // Not pollable: rely on the other ends (journalctl's SIGPIPE, the exit).
        Err(_) => std::future::pending::<()>().await,
    }
}
