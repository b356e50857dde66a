//! What berthd does at start: the store says which containers exist; the
//! shims and /run say how they are. A container whose create was interrupted
//! (`Creating`) is undone; a live shim is watched again; a gone shim's exit
//! record is recorded; a gone shim without one is "shim died".

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::daemon::Daemon;
use crate::lifecycle::{after, transition, Status, Verb};
use crate::rollback::{undo_create, Made};

#[derive(Debug, Default)]
pub struct Report {
    pub reattached: usize,
    pub repaired: usize,
}

pub async fn recover(conn: &zbus::Connection, daemon: &Arc<Daemon>) -> Report {
    let mut report = Report::default();
    // Deletes a kill interrupted: finished, as the user asked (deleting.rs).
    for id in crate::deleting::pending(&daemon.run_dir) {
        if let Ok(Some(rec)) = daemon.store.get(&id) {
            undo_create(daemon, &id, !rec.image.is_empty(), Made::MaybeContainer).await;
            crate::init_calls::destroy_scope_of(&id).await;
            tracing::warn!(container = %id, "finished a delete a restart interrupted");
            report.repaired += 1;
        }
        crate::deleting::unmark(&daemon.run_dir, &id);
    }
    for rec in daemon.store.list().unwrap_or_default() {
        if rec.status == Status::Creating {
            // Killed between the intent and the result: take it all back
            // (init, scope, state dir), as a failed create would have. The
            // shim berthd started goes on without it: undoing before it is
            // done would miss what it makes afterwards (an orphan scope,
            // shim and state dir), so wait for it to finish first.
            wait_for_creating_shim(&daemon.run_dir, &rec.id).await;
            let from_image = !rec.image.is_empty();
            undo_create(daemon, &rec.id, from_image, Made::MaybeContainer).await;
            // berthd starts a forked shim's scope itself (cgroups::placed):
            // killed during that call, the scope may stand with no state.json
            // naming it — stopped here if it is this container's.
            crate::init_calls::destroy_scope_of(&rec.id).await;
            tracing::warn!(container = %rec.id, "removed a half-created container");
            report.repaired += 1;
            continue;
        }
        let shim_alive = rec.shim_pid != 0
            && crate::init_calls::process_start_time(rec.shim_pid) == Some(rec.shim_start);
        if transition(rec.status, Verb::Exit).is_ok() && !shim_alive {
            let (code, signal, reason) = crate::shims::read_exit(&daemon.run_dir, &rec.id);
            let _ = daemon.record_exit(&rec.id, code, signal, &reason).await;
            report.repaired += 1;
        }
        if rec.status == Status::Created && shim_alive && started_meanwhile(daemon, &rec) {
            // Killed inside a Start, after the process was let go: it runs,
            // the record still says created (and a second Start would
            // fail). Record what is; the FIFO goes as Start removes it.
            let fifo = daemon.run_dir.join(&rec.id).join(crate::init_calls::FIFO);
            let _ = std::fs::remove_file(&fifo);
            let _ = daemon
                .store
                .update(&rec.id, |r| {
                    if r.status == Status::Created {
                        r.status = after(r.status, Verb::Start);
                        if r.started_at == 0 {
                            r.started_at = crate::daemon::now_us();
                        }
                    }
                })
                .await;
            tracing::warn!(container = %rec.id, "recorded a start cut short as running");
            report.repaired += 1;
        }
        match crate::api::verbs::register(conn, daemon, &rec.id).await {
            Ok(_) => report.reattached += 1,
            Err(e) => tracing::error!(container = %rec.id, "re-attaching: {e:?}"),
        }
        if shim_alive {
            // One registered before the restart is there still
            // (MachineExists is fine); one machined lost meanwhile (a
            // machined restart without its state in /run) comes back.
            crate::machined::register_in_background(conn, daemon, &rec.id);
        }
        // Health timers lost with systemd's state come back; an exit this
        // berthd did not see (or a restart's backoff it did not finish)
        // gets its policy's decision now.
        match daemon.get(&rec.id).map(|r| r.status) {
            Ok(Status::Running) => crate::api::lifecycle::after_start(conn, daemon, &rec.id).await,
            Ok(Status::Stopped) => crate::restart::schedule(conn, daemon, &rec.id),
            // Killed inside a relaunch, after the new shim was recorded and
            // before its start: start it as the relaunch would have.
            Ok(Status::Created) if crate::restart::relaunched(&rec) => {
                if let Err(e) = crate::api::verbs::start(conn, daemon, &rec.id).await {
                    tracing::error!(container = %rec.id, "starting a relaunched container: {e}");
                }
            }
            _ => {}
        }
    }
    // The default network exists from the start (`network ls` shows it);
    // a subnet taken on this host is said here, and again at first use.
    {
        let store = daemon.store.clone();
        let made = daemon
            .nets
            .blocking(move |paths| {
                crate::network::find_or_default(&store, paths, berth_net::network::DEFAULT_NETWORK)
            })
            .await;
        if let Err(e) = made {
            tracing::warn!(
                "the default network {}: {e}",
                berth_net::network::DEFAULT_NETWORK
            );
        }
    }
    for net in daemon.store.networks().unwrap_or_default() {
        if let Err(e) = crate::api::networks::register(conn, daemon, &net.name).await {
            tracing::error!(network = %net.name, "putting on the bus: {e:?}");
        }
    }
    for vol in daemon.store.volumes().unwrap_or_default() {
        if let Err(e) = crate::api::volumes::register(conn, daemon, &vol.name).await {
            tracing::error!(volume = %vol.name, "putting on the bus: {e:?}");
        }
    }
    // Image rootfs whose container is gone (a crash inside create or delete).
    if let Some(images) = &daemon.images {
        let dir = images.root().join("containers");
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if matches!(daemon.store.get(&name), Ok(None)) {
                daemon.release_rootfs(&name).await;
                report.repaired += 1;
            }
        }
    }
    // Networking of containers with no record (a crash inside create,
    // delete or the undo of a create): CNI DEL, namespace, files.
    let known: std::collections::HashSet<String> = daemon
        .store
        .list()
        .unwrap_or_default()
        .into_iter()
        .map(|r| r.id)
        .collect();
    let swept = daemon
        .nets
        .blocking(move |paths| Ok(crate::network::sweep(paths, &known)))
        .await
        .unwrap_or_default();
    report.repaired += swept.len();
    // Rewritten bundles whose container is gone (a crash between the
    // record's removal and the directory's).
    for entry in std::fs::read_dir(&daemon.bundles_dir)
        .into_iter()
        .flatten()
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if matches!(daemon.store.get(&name), Ok(None)) {
            let _ = std::fs::remove_dir_all(entry.path());
            report.repaired += 1;
        }
    }
    // Monitors' sub-cgroups left empty by a crash (monitors.rs). Not
    // counted as repairs: a stopped container's is empty too.
    let swept = crate::monitors::sweep();
    tracing::debug!(swept, "removed empty monitor cgroups");
    report
}

/// How long recovery waits for a shim still creating a container (its
/// createRuntime hooks, say) before undoing the create regardless.
const CREATING_SHIM_WAIT: Duration = Duration::from_secs(60);

/// Waits until no `berth-shim` is creating container `id` under `run_dir`
/// any more: it then either made the container (state.json is there, and
/// the undo finds it) or failed and undid its own work.
async fn wait_for_creating_shim(run_dir: &Path, id: &str) {
    let deadline = Instant::now() + CREATING_SHIM_WAIT;
    while creating_shim(run_dir, id) {
        if Instant::now() > deadline {
            tracing::warn!(container = %id, "a shim is still creating it; undoing anyway");
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Whether a `berth-shim` creating `id` under `run_dir` runs: berthd's own
/// command line (`--root RUN --id ID`, no `--exec-id`), until the shim
/// re-executes into berth-monitor. The container's init, forked from the
/// shim, carries that command line too until it execs: a process whose
/// parent is already the monitor is such an init, not a shim at work.
fn creating_shim(run_dir: &Path, id: &str) -> bool {
    shim_binary_in_monitor_cgroup(id) || spawned_creating_shim(run_dir, id)
}

/// A shim forked by the exec server carries the server's command line, so
/// it is found by where it was born: its container's sub-cgroup of
/// berthd-monitors.scope, with the berth-shim binary still its image (its
/// init too, before its scope takes it). Once re-executed into berth-monitor,
/// or gone, it is done.
fn shim_binary_in_monitor_cgroup(id: &str) -> bool {
    let procs = std::fs::read_to_string(crate::monitors::dir().join(id).join("cgroup.procs"));
    procs.unwrap_or_default().lines().any(|pid| {
        std::fs::read_link(format!("/proc/{pid}/exe"))
            .is_ok_and(|exe| exe.file_name().is_some_and(|n| n == "berth-shim"))
    })
}

/// A `berth-shim` binary berthd ran for `id` (socket-activation fds).
fn spawned_creating_shim(run_dir: &Path, id: &str) -> bool {
    let cmdline = |dir: &Path| std::fs::read(dir.join("cmdline")).ok();
    let procs = std::fs::read_dir("/proc").into_iter().flatten().flatten();
    procs.into_iter().any(|entry| {
        let Some(raw) = cmdline(&entry.path()) else {
            return false;
        };
        let parent_is_monitor = std::fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|st| {
                st.rsplit_once(')')?
                    .1
                    .split_whitespace()
                    .nth(1)?
                    .parse::<u32>()
                    .ok()
            })
            .and_then(|ppid| cmdline(&Path::new("/proc").join(ppid.to_string())))
            .is_some_and(|p| p.split(|b| *b == 0).next() == Some(b"berth-monitor"));
        if parent_is_monitor {
            return false;
        }
        let args: Vec<&[u8]> = raw.split(|b| *b == 0).collect();
        let arg = |name: &str| {
            args.windows(2)
                .find(|w| w[0] == name.as_bytes())
                .map(|w| w[1])
        };
        let shim = args
            .first()
            .is_some_and(|a| Path::new(std::ffi::OsStr::from_bytes(a)).ends_with("berth-shim"));
        shim && arg("--id") == Some(id.as_bytes())
            && arg("--exec-id").is_none()
            && arg("--root") == Some(run_dir.as_os_str().as_bytes())
    })
}

/// Whether a container recorded as created has in fact been started: its
/// FIFO is gone (Start removes it once the process exec'd), or its init — the
/// shim's fork, blocked on the FIFO until then — runs another program.
fn started_meanwhile(daemon: &Daemon, rec: &crate::store::ContainerRecord) -> bool {
    let fifo = daemon.run_dir.join(&rec.id).join(crate::init_calls::FIFO);
    if crate::init_calls::process_start_time(rec.pid) != Some(rec.pid_start) {
        return false; // gone: its shim records the exit
    }
    if !fifo.exists() {
        return true;
    }
    let exe = std::fs::read_link(format!("/proc/{}/exe", rec.pid));
    let shim = std::fs::canonicalize(&daemon.shim);
    matches!((exe, shim), (Ok(e), Ok(s)) if e != s)
}
