//! io.berth.Berth1.Networks at /io/berth/Berth1 (beside the Manager) and one
//! io.berth.Berth1.Network object per network, machined-style: create, list,
//! get, remove, prune; the network's settings and members as properties.

use std::collections::HashMap;
use std::sync::Arc;

use berth_net::NetworkSpec;
use zbus::object_server::SignalEmitter;
use zbus::zvariant::{ObjectPath, OwnedObjectPath, OwnedValue};
use zbus::{interface, Connection};

use crate::api::error::{Error, Result};
use crate::api::{escaped_path, require_root, MANAGER_PATH};
use crate::daemon::Daemon;
use crate::network::NetworkRequest;
use crate::options::get;

pub struct Networks {
    pub daemon: Arc<Daemon>,
}

pub struct NetworkObject {
    pub daemon: Arc<Daemon>,
    pub name: String,
}

pub fn network_path(name: &str) -> OwnedObjectPath {
    escaped_path("network", name)
}

/// CreateNetwork's options: subnet, gateway, subnet6 (s), internal (b),
/// labels (a{ss}).
fn request(name: &str, options: &HashMap<String, OwnedValue>) -> Result<NetworkRequest> {
    let mut req = NetworkRequest {
        name: name.into(),
        ..Default::default()
    };
    for (key, value) in options {
        match key.as_str() {
            "subnet" => req.subnet = Some(get(key, value, "s")?),
            "gateway" => req.gateway = Some(get(key, value, "s")?),
            "subnet6" => req.subnet6 = Some(get(key, value, "s")?),
            "internal" => req.internal = get(key, value, "b")?,
            "labels" => {
                let l: HashMap<String, String> = get(key, value, "a{ss}")?;
                req.labels = l.into_iter().collect();
            }
            other => {
                return Err(Error::InvalidArgument(format!(
                    "unknown option {:?} (known: subnet, gateway, subnet6, internal, labels)",
                    crate::daemon::brief(other)
                )))
            }
        }
    }
    Ok(req)
}

/// Puts network `name`'s object on the bus (again: harmless).
pub async fn register(
    conn: &Connection,
    daemon: &Arc<Daemon>,
    name: &str,
) -> Result<OwnedObjectPath> {
    let path = network_path(name);
    let obj = NetworkObject {
        daemon: daemon.clone(),
        name: name.into(),
    };
    conn.object_server()
        .at(&path, obj)
        .await
        .map_err(Error::ZBus)?;
    Ok(path)
}

/// Removes network `name`; with `force`, its containers first (as podman).
async fn remove(conn: &Connection, daemon: &Arc<Daemon>, name: &str, force: bool) -> Result<()> {
    if force {
        let users = {
            let (store, n) = (daemon.store.clone(), name.to_string());
            daemon
                .nets
                .blocking(move |_| crate::network::network_users(&store, &n))
                .await?
        };
        for id in users {
            crate::api::verbs::delete(conn, daemon, &id, true).await?;
        }
    }
    {
        let _membership = daemon.nets.lock().await;
        let (store, n) = (daemon.store.clone(), name.to_string());
        daemon
            .nets
            .blocking(move |paths| crate::network::remove_network(&store, paths, &n))
            .await?;
    }
    let path = network_path(name);
    let _ = conn.object_server().remove::<NetworkObject, _>(&path).await;
    if let Ok(em) = SignalEmitter::new(conn, MANAGER_PATH) {
        let _ = Networks::network_removed(&em, name, path.as_ref()).await;
    }
    Ok(())
}

#[interface(name = "io.berth.Berth1.Networks")]
impl Networks {
    /// Creates a bridge network; options subnet (IPv4 CIDR; default: the
    /// first free /24 of 10.91.0.0/16), gateway, subnet6, internal, labels.
    async fn create_network(
        &self,
        name: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(signal_emitter)] em: SignalEmitter<'_>,
    ) -> Result<OwnedObjectPath> {
        require_root(conn, &hdr).await?;
        let req = request(name, &options)?;
        {
            let _membership = self.daemon.nets.lock().await;
            let store = self.daemon.store.clone();
            self.daemon
                .nets
                .blocking(move |paths| crate::network::create_network(&store, paths, &req))
                .await?;
        }
        let path = register(conn, &self.daemon, name).await?;
        let _ = Self::network_new(&em, name, path.as_ref()).await;
        Ok(path)
    }

    /// Every network: (name, bridge, IPv4 subnet, gateway, object).
    async fn list_networks(
        &self,
    ) -> Result<Vec<(String, String, String, String, OwnedObjectPath)>> {
        let nets = self.daemon.store.networks()?;
        Ok(nets
            .into_iter()
            .map(|n| {
                let path = network_path(&n.name);
                (
                    n.name,
                    n.bridge,
                    n.subnet.to_string(),
                    n.gateway.to_string(),
                    path,
                )
            })
            .collect())
    }

    async fn get_network(&self, name: &str) -> Result<OwnedObjectPath> {
        match self.daemon.store.network(name)? {
            Some(_) => Ok(network_path(name)),
            None => Err(Error::NotFound(format!(
                "no network {:?}",
                crate::daemon::brief(name)
            ))),
        }
    }

    /// Removes a network: InUse while containers use it, unless `force`
    /// (which deletes them first).
    async fn remove_network(
        &self,
        name: &str,
        force: bool,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        require_root(conn, &hdr).await?;
        remove(conn, &self.daemon, name, force).await
    }

    /// Removes every network no container uses (not the default one);
    /// returns their names.
    async fn prune_networks(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<Vec<String>> {
        require_root(conn, &hdr).await?;
        let unused: Vec<String> = {
            let store = self.daemon.store.clone();
            self.daemon
                .nets
                .blocking(move |_| {
                    let mut out = Vec::new();
                    for n in store.networks()? {
                        if n.name != berth_net::network::DEFAULT_NETWORK
                            && crate::network::network_users(&store, &n.name)?.is_empty()
                        {
                            out.push(n.name);
                        }
                    }
                    Ok(out)
                })
                .await?
        };
        let mut removed = Vec::new();
        for name in unused {
            // One in use meanwhile stays.
            if remove(conn, &self.daemon, &name, false).await.is_ok() {
                removed.push(name);
            }
        }
        Ok(removed)
    }

    #[zbus(signal)]
    async fn network_new(
        em: &SignalEmitter<'_>,
        name: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;

    #[zbus(signal)]
    async fn network_removed(
        em: &SignalEmitter<'_>,
        name: &str,
        path: ObjectPath<'_>,
    ) -> zbus::Result<()>;
}

impl NetworkObject {
    fn spec(&self) -> Option<NetworkSpec> {
        self.daemon.store.network(&self.name).ok().flatten()
    }
}

#[interface(name = "io.berth.Berth1.Network")]
impl NetworkObject {
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
    fn bridge(&self) -> String {
        self.spec().map(|s| s.bridge).unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn subnet(&self) -> String {
        self.spec()
            .map(|s| s.subnet.to_string())
            .unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn gateway(&self) -> String {
        self.spec()
            .map(|s| s.gateway.to_string())
            .unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn subnet6(&self) -> String {
        self.spec()
            .and_then(|s| s.subnet6)
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn internal(&self) -> bool {
        self.spec().is_some_and(|s| s.internal)
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn labels(&self) -> HashMap<String, String> {
        self.spec()
            .map(|s| s.labels.into_iter().collect())
            .unwrap_or_default()
    }

    #[zbus(property(emits_changed_signal = "const"))]
    fn created_at(&self) -> u64 {
        self.spec().map(|s| s.created_at).unwrap_or_default()
    }

    /// The containers on it: (id, IPv4, MAC, IPv6).
    #[zbus(property(emits_changed_signal = "false"))]
    fn containers(&self) -> Vec<(String, String, String, String)> {
        let recs = self.daemon.store.list().unwrap_or_default();
        recs.into_iter()
            .filter_map(|r| {
                let n = r.net?;
                (n.network == self.name).then(|| {
                    let a = n.addresses;
                    (r.id, a.ipv4, a.mac, a.ipv6)
                })
            })
            .collect()
    }
}
