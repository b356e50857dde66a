//! The storage part of berthd's verbs (daemon.rs): a create's mounts
//! planned (volumes made on first use) once it is recorded, and the volumes
//! it made undone when it fails.

use std::path::PathBuf;

use crate::daemon::Daemon;
use crate::error::{Error, Result};
use crate::options::CreateOptions;

impl Daemon {
    /// Named volumes' directories: `<state>/volumes`, beside the bundles.
    pub fn volumes_dir(&self) -> PathBuf {
        self.bundles_dir.with_file_name("volumes")
    }

    /// Fills `req.storage_spec` from its storage options: bind sources
    /// checked, volumes found or made. Called once the create is recorded
    /// (its record names the volumes, so none is removed meanwhile).
    pub(crate) async fn plan_storage(&self, req: &mut CreateOptions) -> Result<()> {
        if !req.storage.any() {
            return Ok(());
        }
        let _volumes = self.volume_lock.lock().await;
        let (store, dir, opts) = (self.store.clone(), self.volumes_dir(), req.storage.clone());
        let spec = tokio::task::spawn_blocking(move || crate::volumes::plan(&store, &dir, &opts))
            .await
            .map_err(|e| Error::Internal(e.to_string()))??;
        req.storage_spec = Some(spec);
        Ok(())
    }

    /// Removes the volumes a failed create made on first use (after its
    /// record is gone: they are in use until then).
    pub(crate) async fn undo_storage(&self, req: &CreateOptions) {
        let Some(made) = req.storage_spec.as_ref().map(|s| s.made.clone()) else {
            return;
        };
        if made.is_empty() {
            return;
        }
        let _volumes = self.volume_lock.lock().await;
        let (store, dir) = (self.store.clone(), self.volumes_dir());
        let _ =
            tokio::task::spawn_blocking(move || crate::volumes::plan::undo(&store, &dir, &made))
                .await;
    }
}
