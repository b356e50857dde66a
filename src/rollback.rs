//! Taking back a create that did not complete, the one way it is done:
//! after the shim failed, after the result could not be recorded, and at
//! start for a record left "creating" by a crash (recovery.rs).

use std::path::Path;

use crate::daemon::Daemon;
use crate::init_calls;

/// What a create may have left behind.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Made {
    /// The shim failed: it undid its own work (init, scope, state dir).
    NoContainer,
    /// A container may exist (made but not recorded, or a crash mid-create).
    MaybeContainer,
}

/// Removes container `id`'s container (if `made` says there may be one),
/// image rootfs (if `from_image`), network, rewritten bundle and record. Best effort
/// throughout: each step undoes what exists and skips what does not, so
/// undoing twice or undoing half a create is harmless.
pub async fn undo_create(daemon: &Daemon, id: &str, from_image: bool, made: Made) {
    if made == Made::MaybeContainer {
        let _ = init_calls::delete(&daemon.run_dir, id, Vec::new()).await;
    }
    // Its shim (if one was forked) is exiting: a second at most.
    crate::monitors::release_within(id, std::time::Duration::from_secs(1)).await;
    if from_image {
        daemon.release_rootfs(id).await;
    }
    daemon.release_network(id).await;
    remove_bundle(&daemon.bundles_dir, id).await;
    let _ = daemon.store.remove(id).await;
}

/// Removes container `id`'s rewritten bundle, if any: on the blocking pool,
/// as unlinking may wait on the disk.
pub async fn remove_bundle(bundles_dir: &Path, id: &str) {
    let dir = bundles_dir.join(id);
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}
