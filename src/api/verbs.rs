//! The container verbs both bus faces serve — the Manager's by-id methods
//! and each container object's — and the object's life on the bus: put on
//! it at create or recovery, its shim watched, its properties and the
//! Manager's signals sent as it starts, exits and goes.

use std::collections::HashMap;
use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{OwnedObjectPath, OwnedValue, Value};
use zbus::Connection;

use crate::api::container::ContainerObject;
use crate::api::error::{Error, Result};
use crate::api::manager::Manager;
use crate::api::{container_path, MANAGER_PATH};
use crate::daemon::Daemon;
use crate::execs::ExecRequest;
use crate::lifecycle::{Status, Verb};
use crate::options::get;

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
    check_process_size(process_json)?;
    let req = parse_exec(options)?;
    Ok(daemon.exec(id, process_json, &req).await?)
}

fn check_process_size(process_json: &str) -> Result<()> {
    match process_json.len() {
        n if n > MAX_PROCESS_JSON => Err(Error::InvalidArgument(format!(
            "process_json is {n} bytes: at most {MAX_PROCESS_JSON}"
        ))),
        _ => Ok(()),
    }
}

/// ExecContainerAndWait's arguments checked as ExecContainer's; returns
/// (exec id, exit code, signal).
pub async fn exec_and_wait(
    daemon: &Arc<Daemon>,
    id: &str,
    process_json: &str,
    options: &HashMap<String, OwnedValue>,
) -> Result<(String, i32, i32)> {
    check_process_size(process_json)?;
    let req = parse_exec(options)?;
    let (exec_id, (code, signal)) = daemon.exec_and_wait(id, process_json, &req).await?;
    Ok((exec_id, code, signal))
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
    emit_changed(iface.signal_emitter(), changed).await;
}

/// One PropertiesChanged of the Container interface on `emitter`'s object
/// with `changed` (best effort: a signal nobody could be sent is no error).
pub(crate) async fn emit_changed(emitter: &SignalEmitter<'_>, changed: HashMap<&str, Value<'_>>) {
    let Ok(name) = zbus::names::InterfaceName::try_from("io.berth.Berth1.Container") else {
        return;
    };
    let _ = zbus::fdo::Properties::properties_changed(
        emitter,
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
