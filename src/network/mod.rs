//! berthd's networks: the registry (LMDB, conflists for inspection), and
//! each container's attachment (attach.rs), torn down by delete, by the
//! undo of a failed create, or by recovery after a crash (recover.rs).
//!
//! What runs here is synchronous (plugins, mounts, files): callers use
//! [`Networks::blocking`]. One async lock orders the changes of membership
//! (create/remove of networks, attach/detach of containers), so a port is
//! checked free and recorded as taken in one step, and every member's
//! /etc/hosts is rewritten from one consistent view.

mod attach;
mod plan;
mod recover;
mod registry;

use std::path::{Path, PathBuf};

use berth_net::cni::Addresses;
use berth_net::PortMapping;

use crate::error::Error;

pub use attach::{attach, detach, refresh_hosts};
pub use plan::{plan, NetPlan, NsChoice, SpecNet};
pub use recover::sweep;
pub use registry::NetworkRequest;
pub(crate) use registry::{
    create as create_network, find_or_default, remove as remove_network, users as network_users,
};

/// What a container's record says of its network.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct NetRecord {
    /// As asked: a network's name, "none", "host" or "container:<id>".
    pub mode: String,
    /// The network attached through CNI ("" for none/host/container).
    #[serde(default)]
    pub network: String,
    /// Its pinned namespace ("" when it uses the host's or another's).
    #[serde(default)]
    pub netns: String,
    #[serde(default)]
    pub ifname: String,
    /// The veth's host end (machined lists it as the machine's interface).
    #[serde(default)]
    pub host_veth: String,
    #[serde(default)]
    pub addresses: Addresses,
    #[serde(default)]
    pub ports: Vec<PortMapping>,
    #[serde(default)]
    pub hostname: String,
    /// `add_hosts` entries, NAME → IP, in order.
    #[serde(default)]
    pub add_hosts: Vec<(String, String)>,
    /// The directory with its hosts, hostname and resolv.conf ("" if none).
    #[serde(default)]
    pub files: String,
}

/// Where networking keeps its files.
#[derive(Debug, Clone)]
pub struct NetPaths {
    /// Generated conflists, one per network (for inspection and CNI tools).
    pub conf_dir: PathBuf,
    /// The CNI result cache (cache.rs of berth-net).
    pub cache_dir: PathBuf,
    /// host-local's leases.
    pub ipam_dir: PathBuf,
    /// Pinned network namespaces, one file per container.
    pub netns_dir: PathBuf,
    /// Per container: hosts, hostname, resolv.conf.
    pub files_dir: PathBuf,
    pub plugin_dirs: Vec<PathBuf>,
    /// The host's resolv.conf and routing table (tests give their own).
    pub host_resolv: PathBuf,
    pub host_routes: PathBuf,
}

impl NetPaths {
    /// berthd's layout: configs in `conf_dir`, leases and the result cache
    /// under `state_dir`/cni, namespaces and files beside `run_dir`
    /// (/run/berth-net: a container id may be any name under /run/berth).
    pub fn new(conf_dir: &Path, state_dir: &Path, run_dir: &Path) -> NetPaths {
        let run = run_dir.with_file_name(format!(
            "{}-net",
            run_dir.file_name().unwrap_or_default().to_string_lossy()
        ));
        NetPaths {
            conf_dir: conf_dir.to_owned(),
            cache_dir: state_dir.join("cni/results"),
            ipam_dir: state_dir.join("cni/networks"),
            netns_dir: run.join("netns"),
            files_dir: run.join("files"),
            plugin_dirs: berth_net::cni::plugin_dirs(),
            host_resolv: resolv_conf_path(),
            host_routes: PathBuf::from("/proc/net/route"),
        }
    }
}

/// The host's resolver config; with systemd-resolved's stub (127.0.0.53,
/// unreachable from a container), the file listing its real servers.
fn resolv_conf_path() -> PathBuf {
    let stub = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let real = Path::new("/run/systemd/resolve/resolv.conf");
    match stub.contains("127.0.0.53") && real.exists() {
        true => real.to_owned(),
        false => PathBuf::from("/etc/resolv.conf"),
    }
}

pub struct Networks {
    pub paths: NetPaths,
    lock: tokio::sync::Mutex<()>,
}

impl Networks {
    pub fn new(paths: NetPaths) -> Networks {
        Networks {
            paths,
            lock: tokio::sync::Mutex::new(()),
        }
    }

    /// Held across a change of membership (see the module's comment).
    pub async fn lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.lock.lock().await
    }

    /// Runs `f` with the paths on the blocking pool.
    pub async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&NetPaths) -> Result<T, Error> + Send + 'static,
    ) -> Result<T, Error> {
        let paths = self.paths.clone();
        tokio::task::spawn_blocking(move || f(&paths))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
    }
}

impl From<berth_net::NetworkError> for Error {
    fn from(e: berth_net::NetworkError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<berth_net::PortError> for Error {
    fn from(e: berth_net::PortError) -> Self {
        Error::InvalidArgument(e.to_string())
    }
}

impl From<berth_net::CniError> for Error {
    fn from(e: berth_net::CniError) -> Self {
        Error::Network(e.to_string())
    }
}
