//! Registration with systemd-machined: every running container is a machine
//! (class `container`, on its own `berth-<id>.scope`), so `machinectl list`,
//! `status`, `terminate`, `kill`, `shell`-less inspection and the rest of
//! systemd's tooling (`systemctl -M`, `journalctl -M` where a journal exists
//! inside) see berth's containers the way they see nspawn's.
//!
//! machined is an addition, never a condition: a failed registration is
//! logged, and the container runs regardless. Without machined (the package
//! systemd-container not installed, or turned off with `register_machines =
//! false` in /etc/berth/berthd.toml) berthd says so once and goes on.
//!
//! Why RegisterMachineWithNetwork and not CreateMachine: CreateMachine makes
//! a new scope (`machine-NAME.scope`) and moves the leader into it; berth's
//! scope already exists (made by the shim, with the container's resources
//! and Delegate=yes). RegisterMachine* takes the leader's own unit instead
//! (systemd 252 reads it from the leader's cgroup). machined then forgets the
//! machine by itself when that scope stops; berth still unregisters on exit,
//! so the name is free at once for a container of the same name.
//!
//! A container is registered once it has run for REGISTER_AFTER (0.1 s):
//! one that ends sooner is not worth a machine nobody could list.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use zbus::zvariant::OwnedObjectPath;
use zbus::Connection;

use crate::daemon::Daemon;
use crate::lifecycle::Status;

/// Why a registration did not happen.
#[derive(Debug, thiserror::Error)]
pub enum MachinedError {
    /// No machined on this bus (not installed, or its unit failed).
    #[error("systemd-machined is not available: {0}")]
    Absent(String),
    /// machined answered with an error (name taken, leader gone, …).
    #[error("machined refused machine {name:?}: {source}")]
    Refused { name: String, source: zbus::Error },
    #[error("reading the root of container {id} from {path}: {why}")]
    Root {
        id: String,
        path: PathBuf,
        why: String,
    },
}

pub type Result<T> = std::result::Result<T, MachinedError>;

#[zbus::proxy(
    interface = "org.freedesktop.machine1.Manager",
    default_service = "org.freedesktop.machine1",
    default_path = "/org/freedesktop/machine1"
)]
trait Machine1 {
    /// systemd 252's newest call for a process that already has its unit.
    #[allow(clippy::too_many_arguments)]
    fn register_machine_with_network(
        &self,
        name: &str,
        id: &[u8],
        service: &str,
        class: &str,
        leader: u32,
        root_directory: &str,
        ifindices: &[i32],
    ) -> zbus::Result<OwnedObjectPath>;

    /// Sent without waiting for the answer: see `Machines::unregister`.
    #[zbus(no_reply)]
    fn unregister_machine(&self, name: &str) -> zbus::Result<()>;
}

/// How long a container runs before it is registered. One that exits
/// sooner (a `run --rm IMAGE true`, a job's step) would be a machine for a
/// few milliseconds that nobody can list, and its registration and
/// unregistration cost machined, dbus-daemon and berthd ~0.4 ms of CPU and
/// its exit's announcement ~0.3 ms of latency (docs/performance.md).
pub const REGISTER_AFTER: Duration = Duration::from_millis(100);

/// Registers container `id` once it has run for REGISTER_AFTER, under its
/// gate (so in the background, not in Start's reply time, and in order with
/// the exit: a container that exited meanwhile is not registered). By
/// recovery too, for every container with a live shim: a round trip each,
/// not to hold up READY=1 with 1000 containers.
pub fn register_in_background(conn: &Connection, daemon: &Arc<Daemon>, id: &str) {
    let (conn, daemon, id) = (conn.clone(), daemon.clone(), id.to_string());
    tokio::spawn(async move {
        tokio::time::sleep(REGISTER_AFTER).await;
        let _gate = daemon.gate(&id).await;
        if let Ok(rec) = daemon.get(&id) {
            if matches!(rec.status, Status::Running | Status::Paused) {
                daemon.machines.register(&conn, &rec).await;
            }
        }
    });
}

/// The bus errors that mean "no machined here", as opposed to machined
/// refusing this one machine.
const ABSENT: &[&str] = &[
    "org.freedesktop.DBus.Error.ServiceUnknown",
    "org.freedesktop.DBus.Error.NameHasNoOwner",
    "org.freedesktop.DBus.Error.Spawn.ServiceNotFound",
    "org.freedesktop.DBus.Error.Spawn.ChildExited",
    "org.freedesktop.DBus.Error.Spawn.Failed",
    "org.freedesktop.systemd1.NoSuchUnit",
    "org.freedesktop.systemd1.UnitMasked",
];

/// machined's "that name is registered already": after a berthd restart,
/// the container registered by the berthd before is still there.
const EXISTS: &str = "org.freedesktop.machine1.MachineExists";

/// Whether containers are registered, which are, and whether machined's
/// absence was logged already (once per berthd: a host without it would log
/// at every start otherwise).
#[derive(Debug)]
pub struct Machines {
    enabled: AtomicBool,
    absence_logged: AtomicBool,
    /// Ids this berthd registered (or found registered after a restart):
    /// an exit asks machined to forget only a machine it has.
    registered: Mutex<HashSet<String>>,
}

impl Default for Machines {
    fn default() -> Self {
        Machines {
            enabled: AtomicBool::new(true),
            absence_logged: AtomicBool::new(false),
            registered: Mutex::new(HashSet::new()),
        }
    }
}

/// The container's interfaces as machined wants them: the host-side
/// ifindex of its veth (berth networks), none otherwise (machined reads the
/// addresses from the leader's netns itself for `machinectl status`).
pub fn interfaces(rec: &crate::store::ContainerRecord) -> Vec<i32> {
    rec.net
        .as_ref()
        .map(|n| n.host_veth.as_str())
        .filter(|v| !v.is_empty() && !v.contains('/'))
        .and_then(|v| std::fs::read_to_string(format!("/sys/class/net/{v}/ifindex")).ok())
        .and_then(|i| i.trim().parse().ok())
        .into_iter()
        .collect()
}

impl Machines {
    pub fn set_enabled(&self, enabled: bool) {
        self.enabled.store(enabled, Ordering::Relaxed);
    }

    /// Registers container `id` (running, init `leader` in the host's pid
    /// namespace, bundle `bundle`) and logs what happened. Never fails the
    /// caller: a container without a machine is still a container.
    pub async fn register(&self, conn: &Connection, rec: &crate::store::ContainerRecord) {
        let (id, leader, bundle) = (rec.id.as_str(), rec.pid, Path::new(&rec.bundle));
        if !self.enabled.load(Ordering::Relaxed) || leader == 0 {
            return;
        }
        match self
            .try_register(conn, id, leader, bundle, interfaces(rec))
            .await
        {
            Ok(name) => {
                self.registered_ids().insert(id.to_string());
                tracing::debug!(container = %id, machine = %name, "registered with machined")
            }
            Err(e) => self.log(id, e),
        }
    }

    async fn try_register(
        &self,
        conn: &Connection,
        id: &str,
        leader: u32,
        bundle: &Path,
        ifindices: Vec<i32>,
    ) -> Result<String> {
        let root = root_directory(id, bundle).await?;
        let name = machine_name(id);
        let proxy = Machine1Proxy::new(conn)
            .await
            .map_err(|e| absent_or(&name, e))?;
        let root = root.to_string_lossy();
        match proxy
            .register_machine_with_network(
                &name,
                &[],
                "berth",
                "container",
                leader,
                &root,
                &ifindices,
            )
            .await
        {
            Ok(_) => Ok(name),
            Err(e) if error_name(&e) == Some(EXISTS) => Ok(name),
            Err(e) => Err(absent_or(&name, e)),
        }
    }

    /// Forgets the machine of container `id` (gone already is fine: machined
    /// drops a machine whose scope stopped by itself).
    pub async fn unregister(&self, conn: &Connection, id: &str) {
        // Never registered (it ran for less than REGISTER_AFTER, or
        // registration is off or failed): no call.
        if !self.registered_ids().remove(id) {
            return;
        }
        // Not waiting for machined's answer (gone already, NoSuchMachine,
        // is what we want anyway): with 1000 machines machined answers in
        // up to ~1 s, and the exit being announced holds the container's
        // gate, so its DeleteContainer waited as long (delete p99 at 1000
        // running 320–830 ms with, 44–67 ms without registration). Order is
        // kept all the same: the bus delivers one connection's messages in
        // order, so a registration of the same name made later reaches
        // machined after this.
        let name = machine_name(id);
        let result = match Machine1Proxy::new(conn).await {
            Ok(p) => p.unregister_machine(&name).await,
            Err(e) => Err(e),
        };
        if let Err(e) = result {
            self.log(id, absent_or(&name, e));
        }
    }

    fn registered_ids(&self) -> std::sync::MutexGuard<'_, HashSet<String>> {
        // A panic elsewhere while holding it leaves a set that is still whole.
        self.registered
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    fn log(&self, id: &str, e: MachinedError) {
        match e {
            MachinedError::Absent(_) => {
                if !self.absence_logged.swap(true, Ordering::Relaxed) {
                    tracing::warn!(
                        "{e}; containers are not registered as machines \
                         (install systemd-container, or set register_machines = false \
                         in /etc/berth/berthd.toml)"
                    );
                }
            }
            e => tracing::warn!(container = %id, "{e}"),
        }
    }
}

fn error_name(e: &zbus::Error) -> Option<&str> {
    match e {
        zbus::Error::MethodError(name, _, _) => Some(name.as_str()),
        _ => None,
    }
}

fn absent_or(name: &str, e: zbus::Error) -> MachinedError {
    match error_name(&e) {
        Some(n) if ABSENT.contains(&n) => MachinedError::Absent(e.to_string()),
        _ => MachinedError::Refused {
            name: name.into(),
            source: e,
        },
    }
}

/// The container's root directory, from its bundle's config.json (the
/// rewritten bundle for image containers): absolute, as machined wants it.
async fn root_directory(id: &str, bundle: &Path) -> Result<PathBuf> {
    #[derive(serde::Deserialize)]
    struct Root {
        path: PathBuf,
    }
    #[derive(serde::Deserialize)]
    struct Config {
        root: Option<Root>,
    }
    let path = bundle.join("config.json");
    let err = |why: String| MachinedError::Root {
        id: id.into(),
        path: path.clone(),
        why,
    };
    let text = tokio::fs::read(&path)
        .await
        .map_err(|e| err(e.to_string()))?;
    let config: Config = serde_json::from_slice(&text).map_err(|e| err(e.to_string()))?;
    let root = config.root.map(|r| r.path).unwrap_or_default();
    Ok(match root.is_absolute() {
        true => root,
        false => bundle.join(root),
    })
}

/// machined's names are host names (systemd's `hostname_is_valid`: letters,
/// digits, `-` and `.`; no label starts or ends with `-`, no empty label; at
/// most 64 bytes); berth's ids also allow `_` and `+` and 128 bytes. An id
/// machined takes is its own name. Any other becomes: every byte outside
/// [A-Za-z0-9.-] → `-`, labels trimmed of `-` (empty ones dropped), cut to
/// 55 bytes, then `-` and 8 hex digits of a hash (FNV-1a) of the id — so two
/// ids that map alike (`a_b`, `a+b`) still get different machines, and the
/// same id always the same one.
pub fn machine_name(id: &str) -> String {
    if is_hostname(id) {
        return id.to_string();
    }
    let mapped: String = id
        .chars()
        .map(|c| match c {
            'a'..='z' | 'A'..='Z' | '0'..='9' | '.' => c,
            _ => '-',
        })
        .collect();
    let mut base: String = mapped
        .split('.')
        .map(|l| l.trim_matches('-'))
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(".");
    base.truncate(55);
    let base = base.trim_end_matches(['-', '.']);
    let hash = id.bytes().fold(0x811c_9dc5u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    match base.is_empty() {
        true => format!("berth-{hash:08x}"),
        false => format!("{base}-{hash:08x}"),
    }
}

/// systemd 252's hostname_is_valid(s, 0).
fn is_hostname(s: &str) -> bool {
    if s.is_empty() || s.len() > 64 {
        return false;
    }
    let (mut dot, mut hyphen) = (true, true);
    for c in s.chars() {
        match c {
            '.' if dot || hyphen => return false,
            '.' => (dot, hyphen) = (true, false),
            '-' if dot => return false,
            '-' => (dot, hyphen) = (false, true),
            c if c.is_ascii_alphanumeric() => (dot, hyphen) = (false, false),
            _ => return false,
        }
    }
    !dot && !hyphen
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_machined_takes_stay_as_they_are() {
        for id in ["web", "web-1", "a.b.c", "A9", &"x".repeat(64)] {
            assert_eq!(machine_name(id), id);
        }
    }

    #[test]
    fn other_ids_are_mapped_to_distinct_valid_names() {
        let ids = [
            "a_b",
            "a+b",
            "web-",
            "a..b",
            "a-.b",
            "x_",
            &"y".repeat(128),
            "0_",
        ];
        let names: Vec<String> = ids.iter().map(|i| machine_name(i)).collect();
        for (id, name) in ids.iter().zip(&names) {
            assert!(is_hostname(name), "{id} → {name}");
            assert_eq!(machine_name(id), *name, "stable");
        }
        assert_eq!(machine_name("a_b").len(), "a-b-".len() + 8);
        assert!(machine_name("a_b").starts_with("a-b-"));
        let mut unique = names.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), names.len());
    }

    #[test]
    fn hostname_rules_are_systemds() {
        for bad in [
            "",
            "-a",
            "a-",
            ".a",
            "a.",
            "a..b",
            "a-.b",
            "a_b",
            &"z".repeat(65),
        ] {
            assert!(!is_hostname(bad), "{bad}");
        }
        for good in ["a", "a--b", "a.b-c", "1"] {
            assert!(is_hostname(good), "{good}");
        }
    }
}
