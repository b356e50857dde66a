//! What berthd does at start: the store says which containers exist; the
//! shims and /run say how they are. A container whose create was interrupted
//! ("creating") is undone; a live shim is watched again; a gone shim's exit
//! record is recorded; a gone shim without one is "shim died".

use std::sync::Arc;

use crate::daemon::Daemon;

#[derive(Debug, Default)]
pub struct Report {
    pub reattached: usize,
    pub repaired: usize,
}

pub async fn recover(conn: &zbus::Connection, daemon: &Arc<Daemon>) -> Report {
    let mut report = Report::default();
    for rec in daemon.store.list().unwrap_or_default() {
        if rec.status == "creating" {
            // Killed between the intent and the result: take it all back
            // (init, scope, state dir), as a failed create would have.
            let (root, id) = (daemon.run_dir.clone(), rec.id.clone());
            let _ = tokio::task::spawn_blocking(move || {
                berth_init::container::delete(&root, &id, true)
            })
            .await;
            if !rec.image.is_empty() {
                daemon.release_rootfs(&rec.id).await;
            }
            let _ = std::fs::remove_dir_all(daemon.bundles_dir.join(&rec.id));
            let _ = daemon.store.remove(&rec.id);
            tracing::warn!(container = %rec.id, "removed a half-created container");
            report.repaired += 1;
            continue;
        }
        let shim_alive = rec.shim_pid != 0
            && berth_init::container::process_start_time(rec.shim_pid as i32)
                == Some(rec.shim_start);
        if rec.status != "stopped" && !shim_alive {
            let (code, signal, reason) = match crate::shims::read_exit(&daemon.run_dir, &rec.id) {
                Some((c, s)) => (c, s, "exited"),
                None => (-1, 0, "shim died"),
            };
            let _ = daemon.record_exit(&rec.id, code, signal, reason);
            report.repaired += 1;
        }
        match crate::api::manager::register(conn, daemon, &rec.id).await {
            Ok(_) => report.reattached += 1,
            Err(e) => tracing::error!(container = %rec.id, "re-attaching: {e:?}"),
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
    report
}
