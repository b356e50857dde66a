//! io.berth.Berth1.Manager at /io/berth/Berth1: every verb takes the
//! container id (easy from busctl); container objects offer the same verbs.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue, Value};
use zbus::{interface, Connection};

use crate::api::container::ContainerObject;
use crate::api::error::{Error, Result};
use crate::api::{container_path, require_root, MANAGER_PATH};
use crate::daemon::Daemon;
use crate::execs::ExecRequest;
use crate::lifecycle::{Status, Verb};
use crate::options::get;

pub struct Manager {
    pub daemon: Arc<Daemon>,
}

/// `ExecContainer` options: `id` (s), the exec id to use; `attach` (b): hold
/// the output for AttachExec; `stdin` (b): a stdin fed by attach clients;
/// `stdin_fd`, `stdout_fd`, `stderr_fd` (h): the caller's own fds as the
/// process's stdio.
fn parse_exec(options: &HashMap<String, OwnedValue>) -> Result<ExecRequest> {
    let mut req = ExecRequest::default();
    for (key, value) in options {
        match key.as_str() {
            "id" => req.id = Some(get(key, value, "s")?),
            "attach" => req.attach = get(key, value, "b")?,
            "stdin" => req.stdin = get(key, value, "b")?,
            "stdin_fd" => req.stdio[0] = Some(stdio_fd(key, value)?),
            "stdout_fd" => req.stdio[1] = Some(stdio_fd(key, value)?),
            "stderr_fd" => req.stdio[2] = Some(stdio_fd(key, value)?),
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {other:?} (known: id, attach, stdin, stdin_fd, \
                     stdout_fd, stderr_fd)"
                )))
            }
        }
    }
    Ok(req)
}

/// Our own copy of an `h` option's fd, close-on-exec: zbus receives fds
/// without it, and no other process berthd spawns may inherit one.
fn stdio_fd(key: &str, value: &OwnedValue) -> Result<std::os::fd::OwnedFd> {
    use std::os::fd::{AsFd, AsRawFd};
    let Value::Fd(fd) = &**value else {
        return Err(Error::InvalidArgument(format!(
            "option {key} must be of type h (a file descriptor)"
        )));
    };
    let _ = nix::fcntl::fcntl(
        fd.as_raw_fd(),
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );
    fd.as_fd()
        .try_clone_to_owned()
        .map_err(|e| Error::Internal(format!("dup of option {key}: {e}")))
}

pub async fn set_paused(
    conn: &Connection,
    daemon: &Arc<Daemon>,
    id: &str,
    pause: bool,
) -> Result<()> {
    // An exit meanwhile is recorded after (not overwritten by) `paused`.
    daemon.get(id)?; // no gate for ids that name nothing
    let _announcing = daemon.gate(id).await;
    daemon.set_paused(id, pause).await?;
    properties_changed(conn, id).await;
    Ok(())
}

/// The largest process object ExecContainer takes: execve takes at most
/// 2 MiB of arguments and environment (a quarter of the default 8 MiB stack),
/// so anything much bigger fails only after a shim ran.
const MAX_PROCESS_JSON: usize = 1 << 20;

pub async fn exec(
    daemon: &Arc<Daemon>,
    id: &str,
    process_json: &str,
    options: &HashMap<String, OwnedValue>,
) -> Result<String> {
    if process_json.len() > MAX_PROCESS_JSON {
        return Err(Error::InvalidArgument(format!(
            "process_json is {} bytes: at most {MAX_PROCESS_JSON}",
            process_json.len()
        )));
    }
    let req = parse_exec(options)?;
    let (exec_id, _, _) = daemon.exec(id, process_json, &req).await?;
    Ok(exec_id)
}

/// Puts the container's object on the bus and watches its shim.
pub async fn register(
    conn: &Connection,
    daemon: &Arc<Daemon>,
    id: &str,
) -> Result<OwnedObjectPath> {
    let rec = daemon.get(id)?;
    let path = container_path(id);
    conn.object_server()
        .at(
            &path,
            ContainerObject {
                daemon: daemon.clone(),
                id: id.into(),
            },
        )
        .await
        .map_err(Error::ZBus)?;
    if rec.status != Status::Stopped && rec.shim_pid != 0 {
        watch_shim(conn, daemon, id, rec.shim_pid, rec.shim_start);
    }
    Ok(path)
}

/// Watches the shim of `id`: its end is the container's exit (on_exit).
pub(crate) fn watch_shim(
    conn: &Connection,
    daemon: &Arc<Daemon>,
    id: &str,
    shim_pid: u32,
    shim_start: u64,
) {
    let conn = conn.clone();
    crate::shims::watch(
        daemon.clone(),
        id.into(),
        shim_pid,
        shim_start,
        move |daemon, id| async move { on_exit(&conn, &daemon, &id).await },
    );
}

pub(crate) async fn properties_changed(conn: &Connection, id: &str) {
    let path = container_path(id);
    let Ok(iface) = conn
        .object_server()
        .interface::<_, ContainerObject>(&path)
        .await
    else {
        return;
    };
    let Ok(r) = iface.get().await.daemon.get(id) else {
        return;
    };
    // One PropertiesChanged with every state property (not one signal per
    // property): subscribers see a consistent state, the bus carries 1/7.
    let pid = crate::api::shown_pid(&r);
    let changed = HashMap::from([
        ("Status", Value::from(r.status.as_str())),
        ("Pid", Value::from(pid)),
        ("StartedAt", Value::from(r.started_at)),
        ("ExitedAt", Value::from(r.exited_at)),
        ("ExitCode", Value::from(r.exit_code)),
        ("ExitSignal", Value::from(r.exit_signal)),
        ("ExitReason", Value::from(r.exit_reason.as_str())),
        ("Health", Value::from(crate::health::status(&r))),
        ("RestartCount", Value::from(crate::restart::count(&r))),
    ]);
    let Ok(name) = zbus::names::InterfaceName::try_from("io.berth.Berth1.Container") else {
        return;
    };
    let _ = zbus::fdo::Properties::properties_changed(
        iface.signal_emitter(),
        name,
        changed,
        std::borrow::Cow::Borrowed(&[]),
    )
    .await;
}

/// The shim saw the container exit: properties, then ContainerExited; its
/// health timer goes, and its restart policy is asked.
async fn on_exit(conn: &Connection, daemon: &Arc<Daemon>, id: &str) {
    daemon.machines.unregister(conn, id).await;
    properties_changed(conn, id).await;
    if let (Ok(em), Ok(rec)) = (SignalEmitter::new(conn, MANAGER_PATH), daemon.get(id)) {
        let _ = Manager::container_exited(&em, id, rec.exit_code, rec.exit_signal).await;
    }
    crate::api::lifecycle::after_exit(conn, daemon, id).await;
}

/// GetContainerStats / Container.GetStats.
pub fn stats(daemon: &Daemon, id: &str) -> Result<HashMap<String, OwnedValue>> {
    let rec = daemon.get(id)?;
    Daemon::step(&rec, Verb::Stats)?;
    if rec.pid == 0 {
        return Err(Error::FailedPrecondition(format!(
            "container {id} has no process: no cgroup to read"
        )));
    }
    crate::stats::collect(rec.pid).ok_or_else(|| {
        // Its process just ended (the exit not recorded yet): no cgroup
        // left to read, as for a stopped container.
        if crate::init_calls::process_start_time(rec.pid) != Some(rec.pid_start) {
            Error::FailedPrecondition(format!("container {id} exited: no cgroup to read"))
        } else {
            Error::Internal(format!("reading the cgroup of container {id}"))
        }
    })
}

pub async fn start(conn: &Connection, daemon: &Arc<Daemon>, id: &str) -> Result<()> {
    // Status=running goes out before the exit of a process that exits at
    // once is recorded and announced (shims::watch waits for the gate).
    daemon.get(id)?; // no gate for ids that name nothing
    let _announcing = daemon.gate(id).await;
    daemon.start(id).await?;
    // After this gate: not part of Start's latency (machined takes ~3 ms).
    crate::machined::register_in_background(conn, daemon, id);
    properties_changed(conn, id).await;
    crate::api::lifecycle::after_start(conn, daemon, id).await;
    Ok(())
}

pub async fn delete(conn: &Connection, daemon: &Arc<Daemon>, id: &str, force: bool) -> Result<()> {
    crate::api::lifecycle::before_delete(conn, daemon, id, force).await?;
    daemon.delete(id, force).await?;
    let path = container_path(id);
    let _ = conn
        .object_server()
        .remove::<ContainerObject, _>(&path)
        .await;
    if let Ok(em) = SignalEmitter::new(conn, MANAGER_PATH) {
        let _ = Manager::container_removed(&em, id, path.as_ref()).await;
    }
    Ok(())
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
        #[zbus(signal_emitter)] em: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath> {
        require_root(conn, &hdr).await?;
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
        let _ = Self::container_new(&em, id, path.as_ref()).await;
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
        require_root(conn, &hdr).await?;
        Ok(self.daemon.reopen_log(id)?)
    }

    async fn start_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
        crate::api::lifecycle::update(conn, &self.daemon, id, &resources).await
    }

    async fn pause_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        require_root(conn, &hdr).await?;
        set_paused(conn, &self.daemon, id, true).await
    }

    async fn resume_container(
        &self,
        id: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
        exec(&self.daemon, id, process_json, &options).await
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
        crate::api::authorize(conn, &hdr, crate::api::READ_ACTION).await?;
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
        require_root(conn, &hdr).await?;
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
        crate::api::authorize(conn, &hdr, crate::api::READ_ACTION).await?;
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
        require_root(conn, &hdr).await?;
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
    async fn container_removed(
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
    async fn container_exited(
        em: &SignalEmitter<'_>,
        id: &str,
        code: i32,
        signal: i32,
    ) -> zbus::Result<()>;
}
