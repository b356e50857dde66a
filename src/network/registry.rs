//! Networks as records: create (checked: name, subnet, overlaps), the
//! default network made on first use, remove (refused while in use),
//! prune. The conflist of each is written to the config directory for
//! inspection and CNI tools; what berthd runs is made from the record.

use std::collections::BTreeMap;

use berth_net::network::{self, DEFAULT_BRIDGE, DEFAULT_NETWORK, DEFAULT_SUBNET};
use berth_net::NetworkSpec;

use crate::daemon::now_us;
use crate::error::{Error, Result};
use crate::store::{Store, StoreError};

use super::NetPaths;

/// What CreateNetwork asks for.
#[derive(Debug, Clone, Default)]
pub struct NetworkRequest {
    pub name: String,
    pub subnet: Option<String>,
    pub gateway: Option<String>,
    pub subnet6: Option<String>,
    pub internal: bool,
    pub labels: BTreeMap<String, String>,
}

/// Network `name`; the default one is made if it is asked for and missing.
pub fn find_or_default(store: &Store, paths: &NetPaths, name: &str) -> Result<NetworkSpec> {
    if let Some(n) = store.network(name)? {
        return Ok(n);
    }
    if name != DEFAULT_NETWORK {
        return Err(Error::NotFound(format!(
            "no network {name:?} (berthctl network ls)"
        )));
    }
    let subnet = network::parse_subnet(DEFAULT_SUBNET)?;
    let spec = NetworkSpec {
        name: DEFAULT_NETWORK.into(),
        bridge: DEFAULT_BRIDGE.into(),
        gateway: network::gateway(&subnet, None)?,
        subnet,
        subnet6: None,
        internal: false,
        labels: BTreeMap::new(),
        created_at: now_us(),
    };
    let routes = network::host_routes(&paths.host_routes);
    // Our own bridge's route is no conflict (the record was lost, say).
    let routes: Vec<_> = routes.into_iter().filter(|r| *r != subnet).collect();
    network::check_free(&subnet, &store.networks()?, &routes)?;
    insert(store, paths, &spec)?;
    Ok(spec)
}

/// Creates a user network.
pub fn create(store: &Store, paths: &NetPaths, req: &NetworkRequest) -> Result<NetworkSpec> {
    network::check_name(&req.name)?;
    let others = store.networks()?;
    if others.iter().any(|o| o.name == req.name) {
        return Err(Error::AlreadyExists(format!(
            "network {:?} already exists",
            req.name
        )));
    }
    let routes = network::host_routes(&paths.host_routes);
    let subnet = match &req.subnet {
        Some(s) => {
            let s = network::parse_subnet(s)?;
            network::check_free(&s, &others, &routes)?;
            s
        }
        None => network::pick_subnet(&others, &routes)?,
    };
    let spec = NetworkSpec {
        name: req.name.clone(),
        bridge: network::pick_bridge(&others),
        gateway: network::gateway(&subnet, req.gateway.as_deref())?,
        subnet,
        subnet6: req
            .subnet6
            .as_deref()
            .map(network::parse_subnet6)
            .transpose()?,
        internal: req.internal,
        labels: req.labels.clone(),
        created_at: now_us(),
    };
    insert(store, paths, &spec)?;
    Ok(spec)
}

fn insert(store: &Store, paths: &NetPaths, spec: &NetworkSpec) -> Result<()> {
    store.insert_network_blocking(spec).map_err(|e| match e {
        StoreError::Exists(n) => Error::AlreadyExists(format!("network {n:?} already exists")),
        other => other.into(),
    })?;
    if let Err(e) = write_conflist(paths, spec) {
        let _ = store.remove_network_blocking(&spec.name);
        return Err(e);
    }
    Ok(())
}

fn conflist_path(paths: &NetPaths, name: &str) -> std::path::PathBuf {
    paths.conf_dir.join(format!("{name}.conflist"))
}

pub fn write_conflist(paths: &NetPaths, spec: &NetworkSpec) -> Result<()> {
    let io = |e: std::io::Error| Error::Internal(format!("{}: {e}", paths.conf_dir.display()));
    std::fs::create_dir_all(&paths.conf_dir).map_err(io)?;
    let text = serde_json::to_string_pretty(&spec.conflist(&paths.ipam_dir, true))
        .map_err(|e| Error::Internal(e.to_string()))?;
    let path = conflist_path(paths, &spec.name);
    let tmp = paths.conf_dir.join(format!(".{}.tmp", spec.name));
    std::fs::write(&tmp, text + "\n").map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

/// The containers attached to network `name`.
pub fn users(store: &Store, name: &str) -> Result<Vec<String>> {
    Ok(store
        .list()?
        .into_iter()
        .filter(|r| r.net.as_ref().is_some_and(|n| n.network == name))
        .map(|r| r.id)
        .collect())
}

/// Removes network `name`: InUse while containers are attached.
pub fn remove(store: &Store, paths: &NetPaths, name: &str) -> Result<()> {
    if store.network(name)?.is_none() {
        return Err(Error::NotFound(format!("no network {name:?}")));
    }
    let users = users(store, name)?;
    if !users.is_empty() {
        return Err(Error::InUse(format!(
            "network {name:?} is used by container(s) {} (remove them first, or use force)",
            users.join(", ")
        )));
    }
    let spec = store.network(name)?;
    store.remove_network_blocking(name)?;
    let _ = std::fs::remove_file(conflist_path(paths, name));
    // What the plugins leave per network: the bridge, host-local's dir.
    let _ = std::fs::remove_dir_all(paths.ipam_dir.join(name));
    if let Some(spec) = spec {
        if let Err(e) = berth_net::link::delete_bridge(&spec.bridge) {
            tracing::warn!(network = %name, "deleting bridge {}: {e}", spec.bridge);
        }
        for subnet in spec.masqueraded() {
            if let Err(e) = berth_net::masquerade::remove(&subnet, name) {
                tracing::warn!(network = %name, "removing its NAT rule: {e}");
            }
        }
        super::attach::forget_masquerade(name);
    }
    Ok(())
}
