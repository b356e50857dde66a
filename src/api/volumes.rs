//! io.berth.Berth1.Volumes at /io/berth/Berth1 (beside the Manager) and one
//! io.berth.Berth1.Volume object per named volume, as the Networks: create,
//! list, get, remove, prune; the volume's settings and users as properties.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};
use zbus::{interface, Connection};

use crate::api::error::{Error, Result};
use crate::api::{escaped_path, require_root, MANAGER_PATH};
use crate::daemon::Daemon;
use crate::options::get;
use crate::volumes::VolumeRecord;

pub struct Volumes {
    pub daemon: Arc<Daemon>,
}

pub struct VolumeObject {
    pub daemon: Arc<Daemon>,
    pub name: String,
}

pub fn volume_path(name: &str) -> OwnedObjectPath {
    escaped_path("volume", name)
}

/// Puts volume `name`'s object on the bus (again: harmless).
pub async fn register(
    conn: &Connection,
    daemon: &Arc<Daemon>,
    name: &str,
) -> Result<OwnedObjectPath> {
    let path = volume_path(name);
    let obj = VolumeObject {
        daemon: daemon.clone(),
        name: name.into(),
    };
    let added = conn
        .object_server()
        .at(&path, obj)
        .await
        .map_err(Error::ZBus)?;
    if added {
        if let Ok(em) = SignalEmitter::new(conn, MANAGER_PATH) {
            let _ = Volumes::volume_new(&em, name, path.as_ref()).await;
        }
    }
    Ok(path)
}

/// Runs `f` with the store and the volumes' directory on the blocking
/// pool, under the volumes' lock.
async fn blocking<T: Send + 'static>(
    daemon: &Arc<Daemon>,
    f: impl FnOnce(&crate::store::Store, &std::path::Path) -> crate::error::Result<T> + Send + 'static,
) -> Result<T> {
    let _volumes = daemon.volume_lock.lock().await;
    let (store, dir) = (daemon.store.clone(), daemon.volumes_dir());
    let done = tokio::task::spawn_blocking(move || f(&store, &dir))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(done?)
}

/// Removes volume `name`; with `force`, its containers first (as podman).
async fn remove(conn: &Connection, daemon: &Arc<Daemon>, name: &str, force: bool) -> Result<()> {
    if force {
        let users = {
            let n = name.to_string();
            blocking(daemon, move |store, _| crate::volumes::users(store, &n)).await?
        };
        for id in users {
            crate::api::verbs::delete(conn, daemon, &id, true).await?;
        }
    }
    let n = name.to_string();
    blocking(daemon, move |store, dir| {
        crate::volumes::remove(store, dir, &n)
    })
    .await?;
    let path = volume_path(name);
    let _ = conn.object_server().remove::<VolumeObject, _>(&path).await;
    if let Ok(em) = SignalEmitter::new(conn, MANAGER_PATH) {
        let _ = Volumes::volume_removed(&em, name, path.as_ref()).await;
    }
    Ok(())
}

#[interface(name = "io.berth.Berth1.Volumes")]
impl Volumes {
    /// Creates a named volume (driver local); options labels (a{ss}),
    /// driver (s, "local" only).
    async fn create_volume(
        &self,
        name: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<OwnedObjectPath> {
        require_root(conn, &hdr).await?;
        let mut labels = BTreeMap::new();
        for (key, value) in &options {
            match key.as_str() {
                "labels" => {
                    let l: HashMap<String, String> = get(key, value, "a{ss}")?;
                    labels = l.into_iter().collect();
                }
                "driver" => {
                    let d: String = get(key, value, "s")?;
                    if d != crate::volumes::DRIVER {
                        return Err(Error::InvalidArgument(format!(
                            "volume driver {:?}: only \"local\" is supported",
                            crate::daemon::brief(&d)
                        )));
                    }
                }
                other => {
                    return Err(Error::InvalidArgument(format!(
                        "unknown option {:?} (known: labels, driver)",
                        crate::daemon::brief(other)
                    )))
                }
            }
        }
        let n = name.to_string();
        blocking(&self.daemon, move |store, dir| {
            crate::volumes::create(store, dir, &n, labels, false)
        })
        .await?;
        register(conn, &self.daemon, name).await
    }

    /// Every volume: (name, driver, mountpoint, object).
    async fn list_volumes(&self) -> Result<Vec<(String, String, String, OwnedObjectPath)>> {
        let vols = self.daemon.store.volumes()?;
        Ok(vols
            .into_iter()
            .map(|v| {
                let path = volume_path(&v.name);
                (v.name, v.driver, v.mountpoint, path)
            })
            .collect())
    }

    async fn get_volume(&self, name: &str) -> Result<OwnedObjectPath> {
        crate::volumes::find(&self.daemon.store, name)?;
        Ok(volume_path(name))
    }

    /// Removes a volume and its content: InUse while containers use it,
    /// unless `force` (which deletes them first).
    async fn remove_volume(
        &self,
        name: &str,
        force: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        require_root(conn, &hdr).await?;
        remove(conn, &self.daemon, name, force).await
    }

    /// Removes every volume no container uses; returns their names.
    async fn prune_volumes(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<Vec<String>> {
        require_root(conn, &hdr).await?;
        let unused = blocking(&self.daemon, |store, _| {
            let mut out = Vec::new();
            for v in store.volumes()? {
                if crate::volumes::users(store, &v.name)?.is_empty() {
                    out.push(v.name);
                }
            }
            Ok(out)
        })
        .await?;
        let mut removed = Vec::new();
        for name in unused {
            // One taken into use meanwhile stays.
            if remove(conn, &self.daemon, &name, false).await.is_ok() {
                removed.push(name);
            }
        }
        Ok(removed)
    }

    #[zbus(signal)]
    async fn volume_new(
        em: &SignalEmitter<'_>,
        name: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn volume_removed(
        em: &SignalEmitter<'_>,
        name: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;
}

impl VolumeObject {
    fn rec(&self) -> Option<VolumeRecord> {
        self.daemon.store.volume(&self.name).ok().flatten()
    }

    fn users(&self) -> Vec<String> {
        crate::volumes::users(&self.daemon.store, &self.name).unwrap_or_default()
    }
}

#[interface(name = "io.berth.Berth1.Volume")]
impl VolumeObject {
    async fn remove(
        &self,
        force: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        require_root(conn, &hdr).await?;
        remove(conn, &self.daemon, &self.name, force).await
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn name(&self) -> String {
        self.name.clone()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn driver(&self) -> String {
        self.rec().map(|v| v.driver).unwrap_or_default()
    }

    /// The host directory the containers mount.
    #[zbus(property(emits_changed_signal = "const"))]
    fn mountpoint(&self) -> String {
        self.rec().map(|v| v.mountpoint).unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn labels(&self) -> HashMap<String, String> {
        self.rec()
            .map(|v| v.labels.into_iter().collect())
            .unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn created_at(&self) -> u64 {
        self.rec().map(|v| v.created_at).unwrap_or_default()
    }

    /// Whether a container (of any status) mounts it.
    #[zbus(property(emits_changed_signal = "false"))]
    fn in_use(&self) -> bool {
        !self.users().is_empty()
    }

    /// The containers that mount it.
    #[zbus(property(emits_changed_signal = "false"))]
    fn containers(&self) -> Vec<String> {
        self.users()
    }
}
