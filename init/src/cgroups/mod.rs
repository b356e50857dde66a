//! Cgroup placement is the caller's choice, behind one small interface.
//!
//! A container's processes live in one cgroup that berth creates, fills with
//! the container init (still blocked before execve), freezes, lists and removes.
//! Two drivers implement [`CgroupManager`]:
//!
//! - [`systemd`]: a transient `.scope` unit with `Delegate=yes`, created over
//!   D-Bus (`berthd`, and `berth-runtime --systemd-cgroup`). systemd owns the
//!   cgroup tree on systemd hosts; writing to it behind systemd's back gets
//!   undone at the next reload, so there the scope is the only correct way.
//! - [`fs`]: plain cgroupfs directories through cgroups-rs, for `berth-runtime`
//!   on hosts (or in tests) without systemd.
//!
//! Both apply only the `linux.resources` settings a user gave, validated and
//! converted the same way ([`resources`], [`convert`], [`devices`]). They
//! refuse, *before* creating anything, a setting whose controller the host
//! lacks ([`CgroupError::ControllerUnavailable`]) and a setting berth cannot
//! apply ([`CgroupError::Unsupported`]): a limit silently not enforced is
//! worse than an error. "Unlimited" values need no controller.
//!
//! Layout: [`naming`] (unit and path names), [`properties`] (systemd unit
//! properties), [`tree`] (cgroupfs helpers both drivers share),
//! [`device_filter`] and [`bpf`] (device rules on v2 without systemd).

pub mod bpf;
pub mod convert;
pub mod device_filter;
pub mod devices;
pub mod fs;
pub mod hierarchy;
pub mod naming;
pub mod placed;
pub mod properties;
pub mod resources;
pub mod systemd;
pub mod systemd_jobs;
pub mod systemd_private;
pub mod tree;

use std::path::{Path, PathBuf};
use std::time::Duration;

use oci_spec::runtime::LinuxResources;

/// Everything that can go wrong placing or managing a container's cgroup.
#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error(
        "{setting} needs the {controller} cgroup controller, which {cgroup} \
         does not offer (available: {available}); remove the setting, or run where {controller} \
         is enabled"
    )]
    ControllerUnavailable {
        controller: String,
        /// What needs it, e.g. "linux.resources.memory.limit".
        setting: String,
        /// The cgroup whose controller list was read.
        cgroup: String,
        available: String,
    },
    #[error("linux.resources.{setting} is not supported {reason}; remove it from config.json")]
    Unsupported { setting: String, reason: String },
    #[error("linux.resources.{setting} = {value}: {reason}")]
    InvalidValue {
        setting: String,
        value: String,
        reason: String,
    },
    #[error("invalid pid {0}: a process to place must have a positive pid")]
    InvalidPid(i32),
    #[error("invalid cgroupsPath {path:?}: {reason}")]
    InvalidPath { path: String, reason: String },
    #[error("systemd {op} {unit}: {source}")]
    Systemd {
        op: &'static str,
        unit: String,
        /// Boxed: zbus::Error is large, and every Result here carries it.
        #[source]
        source: Box<systemd_jobs::CallError>,
    },
    #[error(
        "unit {unit} already exists and is not a failed leftover: is a container with this \
         name running? (`systemctl status {unit}`)"
    )]
    UnitExists { unit: String },
    #[error(
        "systemd job {job} ({op} {unit}) finished with result {result:?}, not \"done\"; \
         see `journalctl -u {unit}`"
    )]
    Job {
        op: &'static str,
        unit: String,
        job: String,
        result: String,
    },
    #[error("timed out after {waited:?} waiting for {what}")]
    Timeout { what: String, waited: Duration },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("linux.resources.devices on cgroup v2: {0}")]
    Bpf(#[from] bpf::BpfError),
    #[error("cgroupfs: {what}: {source}")]
    Cgroupfs {
        what: String,
        #[source]
        source: cgroups_rs::error::Error,
    },
}

pub type Result<T> = std::result::Result<T, CgroupError>;

impl CgroupError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        CgroupError::Io {
            path: path.into(),
            source,
        }
    }
}

/// One container's cgroup. `create` and `delete` may run in different
/// processes: [`reopen`] rebuilds the manager from what [`CgroupManager::path`]
/// returned, which the caller keeps in the container's state.
pub trait CgroupManager: Send {
    /// Put `pid` (the container init, still blocked before exec) into the
    /// container's cgroup and apply linux.resources. On error nothing is left
    /// behind (no scope, no directory), so the caller only has to kill `pid`.
    fn apply(&mut self, pid: i32, resources: Option<&LinuxResources>) -> Result<()>;
    /// Freeze every process in the cgroup; returns once they are frozen.
    fn freeze(&self) -> Result<()>;
    fn thaw(&self) -> Result<()>;
    fn is_frozen(&self) -> Result<bool>;
    /// All processes in the container cgroup and its sub-cgroups (for `ps` and
    /// `kill --all`), sorted.
    fn pids(&self) -> Result<Vec<i32>>;
    /// Change resources of a running container; same rules as `apply`.
    fn update(&mut self, resources: &LinuxResources) -> Result<()>;
    /// SIGKILL whatever is still inside (thawing first: frozen tasks cannot
    /// die), then remove the cgroup / stop the scope. Idempotent.
    fn destroy(&mut self) -> Result<()>;
    /// Cgroup path (cgroupfs) or unit name (systemd), for state and diagnostics.
    fn path(&self) -> String;
}

/// The manager for a new container. `cgroups_path` is the OCI
/// `linux.cgroupsPath`: `slice:prefix:name` for systemd (unit
/// `<prefix>-<name>.scope` in that slice; default `berth-<id>.scope` in
/// `berth.slice`), a path for cgroupfs (default `/berth/<id>`).
pub fn manager(
    systemd: bool,
    container_id: &str,
    cgroups_path: Option<&Path>,
) -> Result<Box<dyn CgroupManager>> {
    let path = match cgroups_path {
        Some(p) => Some(p.to_str().ok_or_else(|| CgroupError::InvalidPath {
            path: p.display().to_string(),
            reason: "not valid UTF-8".into(),
        })?),
        None => None,
    };
    if systemd {
        Ok(Box::new(systemd::SystemdManager::new(container_id, path)?))
    } else {
        Ok(Box::new(fs::FsManager::new(container_id, path)?))
    }
}

/// Re-open the manager of an existing container from what `path()` returned.
pub fn reopen(systemd: bool, path: &str) -> Result<Box<dyn CgroupManager>> {
    if systemd {
        Ok(Box::new(systemd::SystemdManager::reopen(path)?))
    } else {
        Ok(Box::new(fs::FsManager::reopen(path)?))
    }
}
