//! What every call shares: berth-cri's store, the sandboxes on disk, the
//! proxies to berthd, and the container event stream.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use berth_client::{ContainerProxy, ImagesProxy, ManagerProxy};
use tokio::sync::broadcast;

use crate::api::ContainerEventResponse;
use crate::error::{CriError, Result};
use crate::sandbox::Sandboxes;
use crate::store::Store;

/// The label berthd keeps on every container berth-cri made: recovery
/// finds them (and the ones whose record was lost) by it.
pub const POD_LABEL: &str = "io.berth.cri.pod";

pub struct Cri {
    pub store: Arc<Store>,
    pub sandboxes: Arc<Sandboxes>,
    pub conn: zbus::Connection,
    pub events: broadcast::Sender<ContainerEventResponse>,
    pub pod_cidr: Mutex<String>,
    /// One pod verb at a time per pod (run/stop/remove of the same pod must
    /// not interleave their namespace and CNI steps).
    pub pod_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The streaming server's address and pending URLs (stream/).
    pub streaming: crate::stream::Streaming,
}

impl Cri {
    pub async fn manager(&self) -> Result<ManagerProxy<'static>> {
        Ok(ManagerProxy::new(&self.conn).await?)
    }

    pub async fn images(&self) -> Result<ImagesProxy<'static>> {
        Ok(ImagesProxy::new(&self.conn).await?)
    }

    /// berthd's object of container `id`.
    pub async fn container(&self, id: &str) -> Result<ContainerProxy<'static>> {
        let path = self.manager().await?.get_container(id).await?;
        Ok(ContainerProxy::builder(&self.conn)
            .path(path)?
            .cache_properties(zbus::proxy::CacheProperties::No)
            .build()
            .await?)
    }

    pub fn pod_lock(&self, id: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut m = self.pod_locks.lock().unwrap_or_else(|p| p.into_inner());
        m.entry(id.to_string()).or_default().clone()
    }

    /// Runs blocking store/namespace/CNI work off the executor threads.
    pub async fn blocking<T: Send + 'static>(
        f: impl FnOnce() -> Result<T> + Send + 'static,
    ) -> Result<T> {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(|e| CriError::Internal(e.to_string()))?
    }
}
