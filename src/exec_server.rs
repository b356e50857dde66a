//! The exec server: one `berth-shim --exec-server` per berthd, which forks
//! a shim on request (shim/src/exec_server.rs) — an exec's, and a create's
//! without socket-activation fds — so neither starts a new berth-shim
//! binary and the report comes straight from the shim, not through a
//! parent that must be scheduled and exit first.
//!
//! Started at the first request, again after it died; a request that
//! cannot reach it twice falls back to running berth-shim as before
//! (spawn_shim), so nothing fails for want of the server.

use std::io::IoSlice;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use nix::sys::socket::{sendmsg, socketpair, AddressFamily, ControlMessage, MsgFlags, SockFlag};
use tokio::io::AsyncBufReadExt;

use crate::error::{Error, Result};

/// The running server: our end of its socket, and the process (kept so
/// tokio reaps it once it exits).
struct Running {
    socket: OwnedFd,
    _process: tokio::process::Child,
}

pub struct ExecServer {
    running: Mutex<Option<Running>>,
    /// Network namespaces the server makes ahead for creates (`netns_pool`
    /// in berthd.toml; berth-shim's netns_pool.rs).
    netns_pool: AtomicUsize,
}

impl Default for ExecServer {
    fn default() -> Self {
        ExecServer {
            running: Mutex::new(None),
            netns_pool: AtomicUsize::new(crate::config::DEFAULT_NETNS_POOL),
        }
    }
}

/// Why a request did not reach a server (the caller falls back to run_shim).
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    #[error("starting the exec server {path}: {source}")]
    Spawn {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("exec server: {0}")]
    Io(#[from] nix::errno::Errno),
    #[error("exec server: its lock was poisoned")]
    Poisoned,
}

impl ExecServer {
    /// The pool size a server started from now on gets.
    pub fn set_netns_pool(&self, size: usize) {
        self.netns_pool.store(size, Ordering::Relaxed);
    }

    /// Asks the server (started if need be) for an exec's shim with these
    /// berth-shim `args` and the caller's stdio `fds`; our end of the
    /// socket its report line (and a create's placement request) comes on.
    fn request(
        &self,
        shim: &Path,
        args: &[&str],
        fds: &[BorrowedFd<'_>],
    ) -> std::result::Result<OwnedFd, Unreachable> {
        let message = serde_json::to_vec(args).unwrap_or_default();
        // A socket, not a pipe: a create's shim also asks for its scope on
        // it and reads the answer (cgroups::placed).
        let (report_r, report_w) = socketpair(
            AddressFamily::Unix,
            nix::sys::socket::SockType::Stream,
            None,
            SockFlag::SOCK_CLOEXEC,
        )?;
        let mut raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        raw.push(report_w.as_raw_fd());
        let mut running = self.running.lock().map_err(|_| Unreachable::Poisoned)?;
        // Twice at most: a server that died since the last exec is seen
        // as EPIPE / ECONNRESET on the send and started again.
        for _ in 0..2 {
            if running.is_none() {
                *running = Some(spawn(shim, self.netns_pool.load(Ordering::Relaxed))?);
            }
            let Some(r) = running.as_ref() else { break };
            let sent = sendmsg::<()>(
                r.socket.as_raw_fd(),
                &[IoSlice::new(&message)],
                &[ControlMessage::ScmRights(&raw)],
                MsgFlags::MSG_NOSIGNAL,
                None,
            );
            match sent {
                Ok(_) => return Ok(report_r),
                Err(nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET) => {
                    *running = None;
                }
                Err(e) => return Err(e.into()),
            }
        }
        Err(nix::errno::Errno::EPIPE.into())
    }
}

fn spawn(shim: &Path, netns_pool: usize) -> std::result::Result<Running, Unreachable> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        nix::sys::socket::SockType::SeqPacket,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    let spawn_err = |source| Unreachable::Spawn {
        path: shim.to_path_buf(),
        source,
    };
    let mut cmd = tokio::process::Command::new(shim);
    // The shims it forks inherit its environment, as a spawned one gets
    // berthd's: the slice count included.
    cmd.arg("--exec-server")
        .env("BERTH_NETNS_POOL", netns_pool.to_string())
        .env("BERTH_SLICES", crate::daemon::container_slices())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let fds = crate::sockets::ListenFds::passing(vec![theirs]);
    let _copies = fds.pass_to(&mut cmd).map_err(spawn_err)?;
    let process = cmd.spawn().map_err(spawn_err)?;
    Ok(Running {
        socket: ours,
        _process: process,
    })
}

impl crate::daemon::Daemon {
    /// A shim (an exec's or a create's) forked by the exec server: (init
    /// pid, shim pid) as run_shim's; `fds` are an exec caller's stdio, in
    /// the order of `args`' `--caller-*` flags. Run as berth-shim
    /// (spawn_shim, with `fallback`'s fds) if no server answers.
    ///
    /// With an exec's report comes the rest of its socket ([`QuickExit`]):
    /// where the exec ends within the shim's quick wait, its exit comes
    /// there.
    pub(crate) async fn run_forked_shim(
        &self,
        id: &str,
        args: &[&str],
        fds: &[BorrowedFd<'_>],
        fallback: &crate::sockets::ListenFds,
    ) -> Result<(crate::shims::Processes, Option<QuickExit>)> {
        let monitors = crate::monitors::ensure(&self.monitor()).await?;
        let root = self.run_dir.to_string_lossy();
        let monitors = monitors.to_string_lossy();
        let mut all = vec!["--monitor-cgroup", &monitors, "--root", &root];
        all.extend(["--id", id, "--name", id]);
        all.extend(args);
        // A create's scope is started here, on berthd's bus connection
        // (cgroups::placed): the forked shim opens none.
        let placement = args.contains(&"--systemd-cgroup") && !args.contains(&"--exec-id");
        if placement {
            all.push("--place-via-starter");
        }
        let report = match self.exec_server.request(&self.shim, &all, fds) {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!("{e}; running berth-shim instead");
                return Ok((self.spawn_shim(id, args, fallback).await?, None));
            }
        };
        if placement {
            let line = serve_placement(id, report).await?;
            return Ok((crate::shims::Processes::from_report(&line)?, None));
        }
        let (mut lines, _) = report_lines(report)?;
        let line = next_line(&mut lines).await?;
        let processes = crate::shims::Processes::from_report(&line)?;
        Ok((processes, Some(QuickExit(lines))))
    }
}

/// The rest of an exec's report socket. A shim whose process ended within
/// its quick wait writes the exit record and then the same record here
/// (berth-shim's setup.rs, tell_exit), so the caller hears of the exit
/// without reading the shim's records and waiting for the shim to exit.
pub(crate) struct QuickExit(Lines);

impl QuickExit {
    /// The exit, or None where the shim said nothing more: its process
    /// still runs under berth-monitor (the socket closed at that exec), or
    /// the shim died. The exit record then says what happened.
    pub(crate) async fn exit(mut self) -> Option<berth_proto::ExitRecord> {
        let mut line = String::new();
        self.0.read_line(&mut line).await.ok()?;
        serde_json::from_str(line.trim()).ok()
    }
}

/// A create's shim: places its init when asked (one request, before its
/// report), then returns the report line.
async fn serve_placement(id: &str, report: OwnedFd) -> Result<String> {
    use berth_init::cgroups::placed::{PlaceReply, PlaceRequest};
    use tokio::io::AsyncWriteExt;
    let (mut lines, mut answer) = report_lines(report)?;
    loop {
        let line = next_line(&mut lines).await?;
        let Some(req) = PlaceRequest::parse(&line) else {
            return Ok(line);
        };
        let reply = match req.id == id {
            // Blocking: the systemd driver waits for the scope's job.
            true => match tokio::task::spawn_blocking(move || req.apply()).await {
                Ok(Ok(unit)) => PlaceReply::Placed { placed: unit },
                Ok(Err(e)) => {
                    let e = berth_init::error::Error::from(e);
                    PlaceReply::Failed {
                        error: e.to_string(),
                        kind: e.kind(),
                    }
                }
                Err(e) => PlaceReply::Failed {
                    error: format!("placing the init: {e}"),
                    kind: berth_proto::FailureKind::Internal,
                },
            },
            false => PlaceReply::Failed {
                error: format!("asked to place container {} while creating {id}", req.id),
                kind: berth_proto::FailureKind::Internal,
            },
        };
        // A shim gone meanwhile shows as EOF on the next read.
        let _ = answer.write_all(reply.to_line().as_bytes()).await;
    }
}

type Lines = tokio::io::BufReader<tokio::net::unix::OwnedReadHalf>;

fn report_lines(report: OwnedFd) -> Result<(Lines, tokio::net::unix::OwnedWriteHalf)> {
    let std = std::os::unix::net::UnixStream::from(report);
    let stream = std
        .set_nonblocking(true)
        .and_then(|()| tokio::net::UnixStream::from_std(std))
        .map_err(|e| Error::Internal(format!("the shim's report socket: {e}")))?;
    let (r, w) = stream.into_split();
    Ok((tokio::io::BufReader::new(r), w))
}

/// One line; the shim dying first (EOF, nothing said) is an error.
async fn next_line(lines: &mut Lines) -> Result<String> {
    let mut line = String::new();
    if let Err(e) = lines.read_line(&mut line).await {
        return Err(Error::Internal(format!("reading the shim's report: {e}")));
    }
    if line.is_empty() {
        return Err(Error::Internal("the shim died during setup".into()));
    }
    Ok(line)
}
