//! Typed proxies of io.berth.Berth1, the same interfaces berthd serves
//! (dbus/io.berth.Berth1.*.xml): one copy of every method's signature, used
//! by berthctl (which talks to berthd through nothing else), the
//! integration tests and the benchmarks.

use std::collections::HashMap;

use zbus::zvariant::{OwnedFd, OwnedObjectPath, OwnedValue, Value};

#[zbus::proxy(
    interface = "io.berth.Berth1.Manager",
    default_service = "io.berth.Berth1",
    default_path = "/io/berth/Berth1"
)]
pub trait Manager {
    fn create_container(
        &self,
        id: &str,
        bundle: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn start_container(&self, id: &str) -> zbus::Result<()>;
    fn reopen_container_log(&self, id: &str) -> zbus::Result<()>;
    fn update_container(&self, id: &str, resources: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    fn pause_container(&self, id: &str) -> zbus::Result<()>;
    fn resume_container(&self, id: &str) -> zbus::Result<()>;
    fn kill_container(&self, id: &str, who: &str, signal: i32) -> zbus::Result<()>;
    fn wait_container(&self, id: &str) -> zbus::Result<(i32, i32)>;
    fn delete_container(&self, id: &str, force: bool) -> zbus::Result<()>;
    fn exec_container(
        &self,
        id: &str,
        process_json: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<String>;
    fn exec_container_and_wait(
        &self,
        id: &str,
        process_json: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<(String, i32, i32)>;
    fn wait_exec(&self, id: &str, exec_id: &str) -> zbus::Result<(i32, i32)>;
    fn kill_exec(&self, id: &str, exec_id: &str, signal: i32) -> zbus::Result<()>;
    fn list_containers(&self) -> zbus::Result<Vec<(String, String, OwnedObjectPath)>>;
    fn get_container(&self, id: &str) -> zbus::Result<OwnedObjectPath>;
    fn get_container_stats(&self, id: &str) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn attach_container(&self, id: &str) -> zbus::Result<OwnedFd>;
    fn attach_container_split(&self, id: &str) -> zbus::Result<OwnedFd>;
    fn attach_exec(&self, id: &str, exec_id: &str) -> zbus::Result<OwnedFd>;
    fn resize_terminal(&self, id: &str, exec_id: &str, rows: u16, cols: u16) -> zbus::Result<()>;
    fn get_logs(&self, id: &str, options: HashMap<&str, Value<'_>>) -> zbus::Result<OwnedFd>;
    fn info(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn run_healthcheck(&self, id: &str) -> zbus::Result<(String, i32)>;
    fn top_container(&self, id: &str) -> zbus::Result<Vec<ProcessRow>>;
    fn copy_from_container(&self, id: &str, path: &str) -> zbus::Result<OwnedFd>;
    fn export_container(&self, id: &str) -> zbus::Result<OwnedFd>;
    fn commit_container(&self, id: &str, image: &str) -> zbus::Result<(String, String)>;
    fn copy_to_container(
        &self,
        id: &str,
        path: &str,
        archive: zbus::zvariant::Fd<'_>,
    ) -> zbus::Result<u32>;
    #[zbus(signal)]
    fn container_exited(&self, id: String, code: i32, signal: i32) -> zbus::Result<()>;
    #[zbus(property)]
    fn version(&self) -> zbus::Result<String>;
}

/// ListImages: (name, image id, manifest digest, size, imported at µs).
pub type ImageRow = (String, String, String, u64, u64);

#[zbus::proxy(
    interface = "io.berth.Berth1.Images",
    default_service = "io.berth.Berth1",
    default_path = "/io/berth/Berth1"
)]
pub trait Images {
    fn import_image(
        &self,
        path: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<Vec<String>>;
    fn pull_image(
        &self,
        reference: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<String>;
    fn get_remote_digest(
        &self,
        reference: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<String>;
    fn list_images(&self) -> zbus::Result<Vec<ImageRow>>;
    fn inspect_image(&self, name: &str) -> zbus::Result<String>;
    fn tag_image(&self, name: &str, new_name: &str) -> zbus::Result<String>;
    fn remove_image(&self, name: &str) -> zbus::Result<()>;
    fn prune_images(&self) -> zbus::Result<(u32, u64, u32)>;
    fn save_images(&self, names: Vec<String>, path: &str) -> zbus::Result<()>;
    #[zbus(signal)]
    fn pull_progress(
        &self,
        reference: String,
        digest: String,
        done: u64,
        total: u64,
    ) -> zbus::Result<()>;
}

#[zbus::proxy(
    interface = "io.berth.Berth1.Container",
    default_service = "io.berth.Berth1"
)]
pub trait Container {
    fn start(&self) -> zbus::Result<()>;
    fn kill(&self, who: &str, signal: i32) -> zbus::Result<()>;
    fn update(&self, resources: HashMap<&str, Value<'_>>) -> zbus::Result<()>;
    fn pause(&self) -> zbus::Result<()>;
    fn resume(&self) -> zbus::Result<()>;
    fn exec(&self, process_json: &str, options: HashMap<&str, Value<'_>>) -> zbus::Result<String>;
    fn exec_and_wait(
        &self,
        process_json: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<(String, i32, i32)>;
    fn wait_exec(&self, exec_id: &str) -> zbus::Result<(i32, i32)>;
    fn kill_exec(&self, exec_id: &str, signal: i32) -> zbus::Result<()>;
    fn wait(&self) -> zbus::Result<(i32, i32)>;
    fn delete(&self, force: bool) -> zbus::Result<()>;
    fn get_stats(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    fn attach(&self) -> zbus::Result<OwnedFd>;
    fn attach_exec(&self, exec_id: &str) -> zbus::Result<OwnedFd>;
    fn resize_terminal(&self, exec_id: &str, rows: u16, cols: u16) -> zbus::Result<()>;
    fn run_healthcheck(&self) -> zbus::Result<(String, i32)>;
    fn top(&self) -> zbus::Result<Vec<ProcessRow>>;
    fn logs(&self, options: HashMap<&str, Value<'_>>) -> zbus::Result<OwnedFd>;
    #[zbus(property)]
    fn id(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn bundle(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn status(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn pid(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn unit(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn created_at(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn started_at(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn exited_at(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn exit_code(&self) -> zbus::Result<i32>;
    #[zbus(property)]
    fn exit_signal(&self) -> zbus::Result<i32>;
    #[zbus(property)]
    fn exit_reason(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn image(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn resources(&self) -> zbus::Result<HashMap<String, OwnedValue>>;
    #[zbus(property)]
    fn command(&self) -> zbus::Result<Vec<String>>;
    #[zbus(property)]
    fn health(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn restart_count(&self) -> zbus::Result<u32>;
    #[zbus(property)]
    fn restart_policy(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn labels(&self) -> zbus::Result<HashMap<String, String>>;
    #[zbus(property)]
    fn network(&self) -> zbus::Result<String>;
    #[zbus(property, name = "IPAddress")]
    fn ip_address(&self) -> zbus::Result<String>;
    #[zbus(property, name = "IPv6Address")]
    fn ipv6_address(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn gateway(&self) -> zbus::Result<String>;
    #[zbus(property, name = "MACAddress")]
    fn mac_address(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn hostname(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn ports(&self) -> zbus::Result<Vec<PortRow>>;
}

/// TopContainer's rows: (pid and parent pid inside, uid, host pid, command).
pub type ProcessRow = (u32, u32, u32, u32, String);
/// A published port: (host IP, host port, container port, protocol).
pub type PortRow = (String, u16, u16, String);
/// ListNetworks' rows: (name, bridge, IPv4 subnet, gateway, object).
pub type NetworkRow = (String, String, String, String, OwnedObjectPath);

#[zbus::proxy(
    interface = "io.berth.Berth1.Networks",
    default_service = "io.berth.Berth1",
    default_path = "/io/berth/Berth1"
)]
pub trait Networks {
    fn create_network(
        &self,
        name: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn list_networks(&self) -> zbus::Result<Vec<NetworkRow>>;
    fn get_network(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn remove_network(&self, name: &str, force: bool) -> zbus::Result<()>;
    fn prune_networks(&self) -> zbus::Result<Vec<String>>;
}

#[zbus::proxy(
    interface = "io.berth.Berth1.Network",
    default_service = "io.berth.Berth1"
)]
pub trait Network {
    fn remove(&self, force: bool) -> zbus::Result<()>;
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn bridge(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn subnet(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn gateway(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn subnet6(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn internal(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn labels(&self) -> zbus::Result<HashMap<String, String>>;
    #[zbus(property)]
    fn created_at(&self) -> zbus::Result<u64>;
    /// (id, IPv4, MAC, IPv6) of each container on it.
    #[zbus(property)]
    fn containers(&self) -> zbus::Result<Vec<(String, String, String, String)>>;
}

/// ListVolumes' rows: (name, driver, mountpoint, object).
pub type VolumeRow = (String, String, String, OwnedObjectPath);

#[zbus::proxy(
    interface = "io.berth.Berth1.Volumes",
    default_service = "io.berth.Berth1",
    default_path = "/io/berth/Berth1"
)]
pub trait Volumes {
    fn create_volume(
        &self,
        name: &str,
        options: HashMap<&str, Value<'_>>,
    ) -> zbus::Result<OwnedObjectPath>;
    fn list_volumes(&self) -> zbus::Result<Vec<VolumeRow>>;
    fn get_volume(&self, name: &str) -> zbus::Result<OwnedObjectPath>;
    fn remove_volume(&self, name: &str, force: bool) -> zbus::Result<()>;
    fn prune_volumes(&self) -> zbus::Result<Vec<String>>;
}

#[zbus::proxy(
    interface = "io.berth.Berth1.Volume",
    default_service = "io.berth.Berth1"
)]
pub trait Volume {
    fn remove(&self, force: bool) -> zbus::Result<()>;
    #[zbus(property)]
    fn name(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn driver(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn mountpoint(&self) -> zbus::Result<String>;
    #[zbus(property)]
    fn labels(&self) -> zbus::Result<HashMap<String, String>>;
    #[zbus(property)]
    fn created_at(&self) -> zbus::Result<u64>;
    #[zbus(property)]
    fn in_use(&self) -> zbus::Result<bool>;
    #[zbus(property)]
    fn containers(&self) -> zbus::Result<Vec<String>>;
}

/// One line a person can act on, from a D-Bus error.
pub fn describe(e: &zbus::Error) -> String {
    match e {
        zbus::Error::MethodError(name, msg, _) => {
            let short = name.rsplit('.').next().unwrap_or(name.as_str());
            match msg {
                Some(m) => format!("{m} ({short})"),
                None => short.to_string(),
            }
        }
        zbus::Error::InputOutput(io) => {
            format!("cannot reach berthd (the system bus or its private socket): {io} (is dbus running?)")
        }
        zbus::Error::FDO(fdo) => match fdo.as_ref() {
            zbus::fdo::Error::ServiceUnknown(_) | zbus::fdo::Error::NameHasNoOwner(_) => {
                "berthd is not running and could not be activated (systemctl start berthd)".into()
            }
            zbus::fdo::Error::AccessDenied(m) => format!("access denied by the bus policy: {m}"),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// Whether the call failed for lack of an answer in time (a long Wait), so
/// it may simply be made again.
pub fn is_no_reply(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::FDO(f) if matches!(f.as_ref(), zbus::fdo::Error::NoReply(_) | zbus::fdo::Error::Timeout(_)))
        || matches!(e, zbus::Error::MethodError(n, _, _) if n.as_str() == "org.freedesktop.DBus.Error.NoReply")
}

/// berthd's socket for root clients beside the bus (berthd's
/// private_socket.rs): the Manager interface, peer to peer.
pub const PRIVATE_SOCKET: &str = "/run/berth/.private";

/// A connection for Manager calls: berthd's private socket when this
/// process is root and berthd answers there (a call and its reply skip
/// dbus-daemon), else the system bus. `BERTH_BUS_ONLY=1` always takes the
/// bus. Only the Manager is served on the private socket: container
/// objects, Images, Networks, Volumes and the signals need the bus.
pub fn manager_connection() -> zbus::Result<zbus::blocking::Connection> {
    // SAFETY: geteuid has no failure and touches no memory.
    if !bus_only() && unsafe { libc::geteuid() } == 0 {
        if let Ok(conn) = private_connection() {
            return Ok(conn);
        }
    }
    zbus::blocking::Connection::system()
}

/// Whether `BERTH_BUS_ONLY` (set, not "0") asks for the bus even as root.
pub fn bus_only() -> bool {
    std::env::var_os("BERTH_BUS_ONLY").is_some_and(|v| v != "0")
}

/// A connection to berthd's private socket (root only), or why not.
pub fn private_connection() -> zbus::Result<zbus::blocking::Connection> {
    let stream = std::os::unix::net::UnixStream::connect(PRIVATE_SOCKET)?;
    zbus::blocking::connection::Builder::async_io_unix_stream(stream)
        .p2p()
        .build()
}

/// The same for async clients (berth-cri). The connect is to a local socket
/// and answered at once: made on the caller's thread.
pub async fn private_connection_async() -> zbus::Result<zbus::Connection> {
    let stream = std::os::unix::net::UnixStream::connect(PRIVATE_SOCKET)?;
    zbus::connection::Builder::async_io_unix_stream(stream)
        .p2p()
        .build()
        .await
}

/// Whether the call failed because the connection itself went (berthd
/// restarted under a private-socket client): a new connection may answer.
pub fn is_disconnected(e: &zbus::Error) -> bool {
    matches!(e, zbus::Error::InputOutput(_))
}
