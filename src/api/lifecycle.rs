//! The bus side of restart policies and health checks: the hooks start,
//! exit, kill and delete call, and RunHealthcheck's signals.

use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::Connection;

use crate::api::error::Result;
use crate::api::manager::Manager;
use crate::api::verbs::properties_changed;
use crate::api::MANAGER_PATH;
use crate::daemon::Daemon;

/// Started (by a caller or a relaunch): its health timer.
pub async fn after_start(conn: &Connection, daemon: &Arc<Daemon>, id: &str) {
    let Ok(rec) = daemon.get(id) else { return };
    if let Some(h) = &rec.health {
        if let Err(e) = crate::health_timer::start(conn, id, &h.config).await {
            tracing::error!(container = %id, "starting the health check timer: {e}");
        }
    }
}

/// Exited (recorded and announced): no more checks; the restart policy
/// decides whether it runs again.
pub async fn after_exit(conn: &Connection, daemon: &Arc<Daemon>, id: &str) {
    let Ok(rec) = daemon.get(id) else { return };
    if rec.health.is_some() {
        crate::health_timer::stop(conn, id).await;
    }
    crate::restart::schedule(conn, daemon, id);
}

/// KillContainer: with a signal that ends a process (not USR1, WINCH…), a
/// stop asked for, which the restart policy respects.
pub async fn kill(daemon: &Daemon, id: &str, who: &str, signal: i32) -> Result<()> {
    let stops = [
        libc::SIGKILL,
        libc::SIGTERM,
        libc::SIGINT,
        libc::SIGQUIT,
        libc::SIGHUP,
    ];
    if stops.contains(&signal) && matches!(who, "init" | "all" | "") {
        daemon.mark_stopped_by_user(id).await?;
    }
    Ok(daemon.kill(id, who, signal).await?)
}

/// Delete: nothing may relaunch it meanwhile, and its timer goes.
pub async fn before_delete(
    conn: &Connection,
    daemon: &Daemon,
    id: &str,
    force: bool,
) -> Result<()> {
    let rec = daemon.get(id)?;
    // A refused delete (running, no force) changes nothing.
    Daemon::step(&rec, crate::lifecycle::Verb::Delete { force })?;
    daemon.mark_stopped_by_user(id).await?;
    if rec.health.is_some() {
        crate::health_timer::stop(conn, id).await;
    }
    Ok(())
}

/// RunHealthcheck: the check, its signals when Health changed, and the
/// on_failure action when unhealthy.
pub async fn run_healthcheck(
    conn: &Connection,
    daemon: &Arc<Daemon>,
    id: &str,
) -> Result<(String, i32)> {
    let (health, exit, changed) = crate::health::run(daemon, id).await?;
    if changed {
        properties_changed(conn, id).await;
        if let Ok(em) = SignalEmitter::new(conn, MANAGER_PATH) {
            let _ = Manager::container_health(&em, id, &health).await;
        }
    }
    crate::health::act(conn, daemon, id);
    Ok((health, exit))
}

/// TopContainer: the container's processes (top.rs).
pub fn top(daemon: &Daemon, id: &str) -> Result<Vec<crate::top::ProcessRow>> {
    let rec = daemon.get(id)?;
    Daemon::step(&rec, crate::lifecycle::Verb::Stats)?;
    crate::top::processes(rec.pid).ok_or_else(|| {
        crate::error::Error::FailedPrecondition(format!("container {id} has no processes left"))
            .into()
    })
}

/// UpdateContainer / Container.Update: new resource limits on the scope,
/// then recorded; the Resources property announces them.
pub async fn update(
    conn: &Connection,
    daemon: &Arc<Daemon>,
    id: &str,
    options: &std::collections::HashMap<String, zbus::zvariant::OwnedValue>,
) -> Result<()> {
    let req = crate::options::resources::UpdateOptions::parse(options)
        .map_err(crate::error::Error::from)?;
    // An exit meanwhile is recorded after (not lost under) the update.
    daemon.get(id)?; // no gate for ids that name nothing
    let _announcing = daemon.gate(id).await;
    let rec = daemon.update_resources(id, req).await?;
    let path = crate::api::container_path(id);
    if let Ok(iface) = conn
        .object_server()
        .interface::<_, crate::api::container::ContainerObject>(&path)
        .await
    {
        let now = rec.resources.unwrap_or_default();
        let changed = std::collections::HashMap::from([(
            "Resources",
            zbus::zvariant::Value::from(crate::resources::to_dict(&now)),
        )]);
        crate::api::verbs::emit_changed(iface.signal_emitter(), changed).await;
    }
    Ok(())
}
