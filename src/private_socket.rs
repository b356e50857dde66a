//! A socket for root clients beside the bus, as systemd's
//! /run/systemd/private: `<run dir>/.private` (/run/berth/.private: no
//! container id starts with a dot, so no container's state directory is in
//! its way) serves the Manager interface peer to peer. A call and its reply
//! go client ↔ berthd instead of client ↔ dbus-daemon ↔ berthd: two hops of
//! four, and a process to wake twice, fewer per call. berthctl, berth-bench
//! and whatever uses berth_client::manager_connection take it as root.
//!
//! Who may connect: root only. The socket is made 0600 under the run dir
//! (0700) and, whatever its mode, each peer's SO_PEERCRED uid is checked at
//! accept — anyone else is closed on before a byte is read. Root on the bus
//! skips polkit too, so nothing is granted here that the bus would not.
//!
//! What it serves: io.berth.Berth1.Manager at /io/berth/Berth1, the same
//! object as on the bus. Its side effects stay on the bus: container objects
//! are registered there, ContainerNew and the rest are emitted there (bus
//! subscribers see every change, whichever socket asked for it), systemd is
//! called through it. The container objects, Images, Networks, Volumes and
//! the signals are on the bus only.

use std::io;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use tokio::net::UnixListener;
use zbus::Connection;

use crate::api::manager::Manager;
use crate::api::MANAGER_PATH;
use crate::daemon::Daemon;

/// The socket's name in the run dir (berth_client::PRIVATE_SOCKET).
pub const NAME: &str = ".private";

/// Binds `<run_dir>/.private` (made anew: a stale one from a killed berthd is
/// replaced) and serves each root peer's calls until berthd exits.
pub async fn serve(run_dir: &Path, bus: Connection, daemon: Arc<Daemon>) -> io::Result<()> {
    let listener = bind(&run_dir.join(NAME))?;
    tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => accept(stream, &bus, &daemon),
                // EMFILE and the like: the peer waits in the backlog.
                Err(e) => {
                    tracing::warn!("private socket: accept: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok(())
}

/// At a clean exit: the name gone, not left refusing connections (a
/// killed berthd's is replaced by the next one's).
pub fn remove(run_dir: &Path) {
    let _ = std::fs::remove_file(run_dir.join(NAME));
}

/// The stale socket of a killed berthd replaced. Nobody else can reach it
/// meanwhile: the run dir is 0700 (and the uid check at accept would refuse
/// them anyway); 0600 says so to whoever looks.
fn bind(path: &Path) -> io::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
        _ => {}
    }
    let listener = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    Ok(listener)
}

fn accept(stream: tokio::net::UnixStream, bus: &Connection, daemon: &Arc<Daemon>) {
    match stream.peer_cred() {
        Ok(cred) if cred.uid() == 0 => {}
        Ok(cred) => {
            tracing::warn!(
                uid = cred.uid(),
                "private socket: refused a peer that is not root"
            );
            return;
        }
        Err(e) => {
            tracing::warn!("private socket: the peer's credentials: {e}");
            return;
        }
    }
    let stream = match stream.into_std() {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!("private socket: {e}");
            return;
        }
    };
    let manager = Manager {
        daemon: daemon.clone(),
        bus: Some(bus.clone()),
    };
    tokio::spawn(async move {
        if let Err(e) = run_peer(stream, manager).await {
            tracing::debug!("private socket: a peer's connection: {e}");
        }
    });
}

/// The peer's connection, its handlers run on this task (as the bus's run
/// on main's) until the peer has gone and every call it made is answered:
/// a handler is never dropped halfway (a CreateContainer cut off by its
/// client's exit would leave what it had made).
async fn run_peer(stream: std::os::unix::net::UnixStream, manager: Manager) -> zbus::Result<()> {
    let conn = zbus::connection::Builder::async_io_unix_stream(stream)
        .server(zbus::Guid::generate())?
        .p2p()
        .serve_at(MANAGER_PATH, manager)?
        .internal_executor(false)
        .build()
        .await?;
    let executor = conn.executor().clone();
    let closed = conn.closed();
    tokio::pin!(closed);
    let mut open = true;
    loop {
        tokio::select! {
            _ = executor.tick() => {}
            _ = &mut closed, if open => open = false,
        }
        if !open && executor.is_empty() {
            return Ok(());
        }
    }
}
