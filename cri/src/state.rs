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
    /// The system bus: berthd's container objects and signals, systemd.
    pub conn: zbus::Connection,
    /// berthd's private socket (as root, which berth-cri runs as), where
    /// the Manager's calls go without dbus-daemon in between (docs/api.md
    /// "The private socket").
    pub private: PrivateConnection,
    pub events: broadcast::Sender<ContainerEventResponse>,
    pub pod_cidr: Mutex<String>,
    /// One pod verb at a time per pod (run/stop/remove of the same pod must
    /// not interleave their namespace and CNI steps).
    pub pod_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// The streaming server's address and pending URLs (stream/).
    pub streaming: crate::stream::Streaming,
}

impl Cri {
    /// berthd's Manager: on its private socket when it answers there, else
    /// on the bus.
    pub async fn manager(&self) -> Result<ManagerProxy<'static>> {
        let conn = match self.private.get().await {
            Some(c) => c,
            None => self.conn.clone(),
        };
        Ok(ManagerProxy::new(&conn).await?)
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

/// A connection to berthd's private socket, made at the first call and
/// again after one ended (berthd restarted: its calls in flight fail as on
/// the bus, the next ones go to the new berthd); while none can be made
/// (berthd down, an older berthd, BERTH_BUS_ONLY=1) the bus is used, a new
/// try at most once a second.
#[derive(Default)]
pub struct PrivateConnection {
    state: Arc<Mutex<PrivateState>>,
}

#[derive(Default)]
struct PrivateState {
    conn: Option<zbus::Connection>,
    last_try: Option<std::time::Instant>,
}

impl PrivateConnection {
    async fn get(&self) -> Option<zbus::Connection> {
        {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(c) = &st.conn {
                return Some(c.clone());
            }
            let recently = st
                .last_try
                .is_some_and(|t| t.elapsed() < std::time::Duration::from_secs(1));
            if recently || berth_client::bus_only() {
                return None;
            }
            st.last_try = Some(std::time::Instant::now());
        }
        let conn = berth_client::private_connection_async().await.ok()?;
        self.state.lock().unwrap_or_else(|p| p.into_inner()).conn = Some(conn.clone());
        // Forgotten when it ends, so the next call connects anew.
        let (state, watched) = (Arc::downgrade(&self.state), conn.clone());
        tokio::spawn(async move {
            watched.closed().await;
            if let Some(state) = state.upgrade() {
                let mut st = state.lock().unwrap_or_else(|p| p.into_inner());
                st.conn = None;
                st.last_try = None;
            }
        });
        Some(conn)
    }
}
