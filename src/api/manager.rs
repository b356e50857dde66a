//! io.berth.Berth1.Manager at /io/berth/Berth1: every verb takes the
//! container id (easy from busctl); container objects offer the same verbs.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};
use zbus::{interface, Connection};

use crate::api::error::Result;
use crate::api::verbs::{delete, exec, register, set_paused, start, stats};
use crate::api::{container_path, MANAGER_PATH};
use crate::daemon::Daemon;

pub struct Manager {
    pub daemon: Arc<Daemon>,
    /// Set on the private socket's Manager (private_socket.rs): berthd's
    /// bus connection, where a call's side effects go — objects, signals,
    /// systemd — while the call itself came peer to peer.
    pub bus: Option<Connection>,
}

impl Manager {
    /// The connection a mutating call's side effects go to, once the caller
    /// may manage: on the private socket the bus (its peers are root,
    /// checked at accept); on the bus the caller's connection, for root or
    /// whom polkit authorizes.
    async fn managing<'a>(
        &'a self,
        conn: &'a Connection,
        hdr: &zbus::message::Header<'_>,
    ) -> Result<&'a Connection> {
        self.authorized(conn, hdr, crate::api::MANAGE_ACTION).await
    }

    /// As `managing`, for the polkit action `action`.
    async fn authorized<'a>(
        &'a self,
        conn: &'a Connection,
        hdr: &zbus::message::Header<'_>,
        action: &str,
    ) -> Result<&'a Connection> {
        match &self.bus {
            Some(bus) => Ok(bus),
            None => {
                crate::api::authorize(conn, hdr, action).await?;
                Ok(conn)
            }
        }
    }
}

#[interface(name = "io.berth.Berth1.Manager")]
impl Manager {
    /// Creates a container from an OCI bundle; replies once its scope exists,
    /// its init waits on the exec FIFO and the record is committed.
    async fn create_container(
        &self,
        id: &str,
        bundle: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<OwnedObjectPath> {
        let conn = self.managing(conn, &hdr).await?;
        let request =
            crate::options::CreateOptions::parse(&options).map_err(crate::error::Error::from)?;
        let rec = self.daemon.create(id, bundle, request).await?;
        // Volumes made on first use get their objects (the others have one).
        for v in &rec.volumes {
            let _ = crate::api::volumes::register(conn, &self.daemon, v).await;
        }
        // ContainerNew before anything the shim's watch announces.
        let _announcing = self.daemon.gate(id).await;
        let path = register(conn, &self.daemon, id).await?;
        // On the bus, whichever socket the call came on.
        if let Ok(em) = SignalEmitter::new(conn, MANAGER_PATH) {
            let _ = Self::container_new(&em, id, path.as_ref()).await;
        }
        Ok(path)
    }

    /// Has the container's monitor reopen its CRI log file (option
    /// log_path): the kubelet renamed the old one to rotate it. Replies once
    /// asked; the monitor makes the new file within its next poll.
    async fn reopen_container_log(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        self.managing(conn, &hdr).await?;
        Ok(self.daemon.reopen_log(id)?)
    }

    async fn start_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        let conn = self.managing(conn, &hdr).await?;
        start(conn, &self.daemon, id).await
    }

    /// Signals the init (`who` = "init") or every process ("all").
    async fn kill_container(
        &self,
        id: &str,
        who: &str,
        signal: i32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        self.managing(conn, &hdr).await?;
        crate::api::lifecycle::kill(&self.daemon, id, who, signal).await
    }

    /// New resource limits for a created, running or paused container:
    /// SetUnitProperties(runtime) on its scope, then recorded.
    async fn update_container(
        &self,
        id: &str,
        resources: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        let conn = self.managing(conn, &hdr).await?;
        crate::api::lifecycle::update(conn, &self.daemon, id, &resources).await
    }

    async fn pause_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        let conn = self.managing(conn, &hdr).await?;
        set_paused(conn, &self.daemon, id, true).await
    }

    async fn resume_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        let conn = self.managing(conn, &hdr).await?;
        set_paused(conn, &self.daemon, id, false).await
    }

    /// Runs an OCI process object in the running container, under its own
    /// shim (logs to the journal like the container's); returns the exec id.
    async fn exec_container(
        &self,
        id: &str,
        process_json: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<String> {
        self.managing(conn, &hdr).await?;
        exec(&self.daemon, id, process_json, &options).await
    }

    /// ExecContainer, then WaitExec of the exec, in one call: (exec id, exit
    /// code, signal). Options as ExecContainer's but attach and stdin.
    async fn exec_container_and_wait(
        &self,
        id: &str,
        process_json: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<(String, i32, i32)> {
        self.managing(conn, &hdr).await?;
        crate::api::verbs::exec_and_wait(&self.daemon, id, process_json, &options).await
    }

    /// Sends `signal` to one exec'd process (NotFound: no such exec;
    /// FailedPrecondition: it has exited).
    async fn kill_exec(
        &self,
        id: &str,
        exec_id: &str,
        signal: i32,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        self.managing(conn, &hdr).await?;
        Ok(self.daemon.kill_exec(id, exec_id, signal)?)
    }

    /// (exit code, signal) of an exec'd process, once it has exited.
    async fn wait_exec(&self, id: &str, exec_id: &str) -> Result<(i32, i32)> {
        Ok(self.daemon.wait_exec(id, exec_id).await?)
    }

    /// (exit code, signal) once stopped; at once if it already is.
    async fn wait_container(&self, id: &str) -> Result<(i32, i32)> {
        Ok(self.daemon.wait(id).await?)
    }

    async fn delete_container(
        &self,
        id: &str,
        force: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        let conn = self.managing(conn, &hdr).await?;
        delete(conn, &self.daemon, id, force).await
    }

    /// Figures from the container's cgroup: cpu_usage_usec, memory_current,
    /// memory_max (only with a limit), pids_current, io_read_bytes,
    /// io_write_bytes, processes. Those the tree cannot give are
    /// "unavailable" with a `<key>_reason`, never 0.
    async fn get_container_stats(&self, id: &str) -> Result<HashMap<String, OwnedValue>> {
        stats(&self.daemon, id)
    }

    /// (id, status, object path) of every container.
    async fn list_containers(&self) -> Result<Vec<(String, String, OwnedObjectPath)>> {
        Ok(self
            .daemon
            .store
            .list()?
            .into_iter()
            .map(|r| {
                let path = container_path(&r.id);
                (r.id, r.status.as_str().to_string(), path)
            })
            .collect())
    }

    async fn get_container(&self, id: &str) -> Result<OwnedObjectPath> {
        self.daemon.get(id)?;
        Ok(container_path(id))
    }

    /// A connected stream to the container's attach socket: its output
    /// (from now on) to read, its stdin (if it has one: option `stdin`, or a
    /// terminal) to write.
    async fn attach_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        self.managing(conn, &hdr).await?;
        self.daemon.get(id)?;
        Ok(crate::streams::attach(&self.daemon.run_dir, id, "")?.into())
    }

    /// As AttachContainer, with stdout and stderr apart: the output comes
    /// framed, `[1 stdout | 2 stderr][length: u32 big-endian][bytes]` per
    /// chunk (the input is raw, as on AttachContainer). Not for a terminal
    /// container's (one stream, all frames 1) nor an exec.
    async fn attach_container_split(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        self.managing(conn, &hdr).await?;
        self.daemon.get(id)?;
        Ok(crate::streams::attach_split(&self.daemon.run_dir, id)?.into())
    }

    /// The same for an exec started with option `attach`: its output from
    /// the start, held for the first client.
    async fn attach_exec(
        &self,
        id: &str,
        exec_id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        self.managing(conn, &hdr).await?;
        self.daemon.get(id)?;
        Ok(crate::streams::attach(&self.daemon.run_dir, id, exec_id)?.into())
    }

    /// Resizes the terminal of the container (exec_id "") or of an exec.
    async fn resize_terminal(
        &self,
        id: &str,
        exec_id: &str,
        rows: u16,
        cols: u16,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        self.managing(conn, &hdr).await?;
        self.daemon.get(id)?;
        Ok(crate::streams::resize(
            &self.daemon.run_dir,
            id,
            exec_id,
            rows,
            cols,
        )?)
    }

    /// The container's output from the journal, as a pipe to read: options
    /// `tail` (u, last N lines), `follow` (b, until the container stops or
    /// the reader closes), `since` / `until` (t, µs since the epoch) and
    /// `timestamps` (b, each line begins with its ISO 8601 journal time and
    /// journalctl's short-iso-precise prefix). Polkit action
    /// io.berth.berth1.read for non-root.
    async fn get_logs(
        &self,
        id: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        self.authorized(conn, &hdr, crate::api::READ_ACTION).await?;
        let req = crate::streams::LogsRequest::parse(&options)?;
        Ok(crate::streams::logs(&self.daemon, id, &req)?.into())
    }

    /// Runs the container's health check once (its timer calls this):
    /// (Health after it, the check's exit code; -1: it could not run or
    /// timed out). An unhealthy result does the on_failure action.
    async fn run_healthcheck(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<(String, i32)> {
        let conn = self.managing(conn, &hdr).await?;
        crate::api::lifecycle::run_healthcheck(conn, &self.daemon, id).await
    }

    /// The container's processes: (pid and parent pid as the container
    /// sees them, uid, host pid, command line). Polkit action
    /// io.berth.berth1.read for non-root (command lines may hold secrets).
    async fn top_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<Vec<crate::top::ProcessRow>> {
        self.authorized(conn, &hdr, crate::api::READ_ACTION).await?;
        crate::api::lifecycle::top(&self.daemon, id)
    }

    /// A tar of `path` in the container (running or stopped), as a pipe to
    /// read; paths resolve inside the container's root (its links never
    /// reach the host's files).
    async fn copy_from_container(
        &self,
        id: &str,
        path: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        self.managing(conn, &hdr).await?;
        Ok(crate::api::copy::copy_from(&self.daemon, id, path)
            .await?
            .into())
    }

    /// A tar of the container's filesystem (its rootfs, without the mounts
    /// made in it), as a pipe to read: `berthctl export`.
    async fn export_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<zbus::zvariant::OwnedFd> {
        self.managing(conn, &hdr).await?;
        Ok(crate::api::copy::export(&self.daemon, id).await?.into())
    }

    /// The container's upper layer (what it changed in its image's files)
    /// as a new image `image` on the base image's layers: (the name as
    /// stored, the image id). Containers made from an image only.
    async fn commit_container(
        &self,
        id: &str,
        image: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<(String, String)> {
        self.managing(conn, &hdr).await?;
        crate::api::copy::commit(&self.daemon, id, image).await
    }

    /// Extracts the tar read from `archive` into directory `path` of the
    /// container (or, when `path` is not a directory, as `path`); replies
    /// once it is all written: the number of entries.
    async fn copy_to_container(
        &self,
        id: &str,
        path: &str,
        archive: zbus::zvariant::OwnedFd,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<u32> {
        self.managing(conn, &hdr).await?;
        crate::api::copy::copy_to(&self.daemon, id, path, archive.into()).await
    }

    /// Version, container counts, state and cgroup facts.
    async fn info(&self) -> HashMap<String, OwnedValue> {
        crate::stats::info(&self.daemon)
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn version(&self) -> String {
        env!("CARGO_PKG_VERSION").into()
    }

    #[zbus(signal)]
    async fn container_new(
        em: &SignalEmitter<'_>,
        id: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub(crate) async fn container_removed(
        em: &SignalEmitter<'_>,
        id: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    /// A container's Health changed: starting, healthy or unhealthy.
    #[zbus(signal)]
    pub async fn container_health(
        em: &SignalEmitter<'_>,
        id: &str,
        health: &str,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    pub(crate) async fn container_exited(
        em: &SignalEmitter<'_>,
        id: &str,
        code: i32,
        signal: i32,
    ) -> zbus::Result<()>;
}
