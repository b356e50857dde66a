//! CreateContainer's `a{sv}` options, parsed into a typed [`CreateOptions`]:
//! labels, and what podman users pass on the command line — args, env,
//! terminal, workdir, resources. Nothing here touches a file; the bundle
//! module applies the result to a spec.
//!
//! Every refusal is an [`OptionError`] naming the option and the rule it
//! broke; the D-Bus edge maps them all to InvalidArgument with the same text.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use zbus::zvariant::OwnedValue;

use crate::daemon::brief;

pub mod cri;
pub mod lifecycle;
pub mod namespaces;
pub mod net;
#[cfg(test)]
pub mod props;
pub mod resources;
pub mod security;
pub mod storage;
#[cfg(test)]
mod tests;

/// Limits on what a caller may send (D-Bus allows messages of many MiB).
pub const MAX_LABELS: usize = 256;
pub const MAX_LIST: usize = 4096;
pub const MAX_STRING: usize = 64 * 1024;

pub const KNOWN: &str = "labels, args, env, terminal, workdir, memory, cpus, pids_limit, \
                         notify_socket, stdin, log_unit, image, user, network, ports, \
                         hostname, dns, dns_search, add_hosts, listen_fds, \
                         listen_fdnames, cap_add, cap_drop, privileged, \
                         security_opt, seccomp_profile, group_add, ulimits, sysctls, \
                         annotations, entrypoint, stop_signal, stop_timeout, init, \
                         restart, health_cmd, health_interval, \
                         health_retries, health_start_period, health_timeout, \
                         health_on_failure, volumes, mounts, tmpfs, read_only, \
                         shm_size, devices, spec, slice, log_path, pid, ipc, uts, \
                         cpu_shares, cpu_quota, cpu_period, cpuset_cpus, cpuset_mems, \
                         memory_swap";

/// What CreateContainer's `a{sv}` options asked for.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct CreateOptions {
    pub labels: BTreeMap<String, String>,
    pub args: Option<Vec<String>>,
    pub env: Vec<String>,
    pub terminal: Option<bool>,
    pub workdir: Option<String>,
    /// Bytes.
    pub memory: Option<i64>,
    /// CPUs (1.5 = 150 % of one CPU), as a CFS quota over a 100 ms period.
    pub cpus: Option<f64>,
    pub pids_limit: Option<i64>,
    /// A host socket the container's sd_notify messages go to: its directory
    /// is bound at /run/berth-notify and NOTIFY_SOCKET set.
    pub notify_socket: Option<String>,
    /// Give the container a stdin fed by attach clients.
    pub stdin: bool,
    /// File the container's logs under this unit too (`journalctl -u`).
    pub log_unit: Option<String>,
    /// Create from this image (the bundle argument is then empty).
    pub image: Option<String>,
    /// `uid[:gid]` or `name[:group]` (images only: names resolve in the image).
    pub user: Option<String>,
    /// network, ports, hostname, dns, dns_search, add_hosts.
    pub net: net::NetOptions,
    /// Filled by berthd once the network is attached, never by a caller:
    /// the namespace, hostname and files the spec gets.
    pub net_spec: Option<crate::network::SpecNet>,
    /// pid, ipc, uts.
    pub ns: namespaces::NamespaceOptions,
    /// Filled by berthd once a `container:` is resolved, never by a caller:
    /// the namespaces the spec gets.
    pub ns_spec: Option<crate::namespaces::SpecNamespaces>,
    /// Socket activation: fds for the container's process (sockets.rs).
    pub listen: crate::sockets::ListenFds,
    /// Capabilities, seccomp, masks, groups, ulimits, sysctls, annotations,
    /// entrypoint, stop signal and timeout.
    pub security: security::SecurityOptions,
    /// restart and health_*: what berthd does over the container's life.
    pub lifecycle: lifecycle::LifecycleOptions,
    /// volumes, mounts, tmpfs, read_only, shm_size.
    pub storage: storage::StorageOptions,
    /// Filled by berthd once volumes are made and bind sources checked,
    /// never by a caller: the mounts the spec gets (volumes::plan).
    pub storage_spec: Option<crate::volumes::SpecMounts>,
    /// spec, slice, log_path (a CRI server's container).
    pub cri: cri::CriOptions,
    /// Filled by berthd from `slice` and the id, never by a caller.
    pub cgroups_path: Option<String>,
    /// cpu_shares, cpu_quota, cpu_period, cpuset_cpus, cpuset_mems,
    /// memory_swap.
    pub res: resources::ResourceOptions,
}

/// Why an option was refused. Values a caller sent are kept `brief` (a
/// caller may send megabytes; the reply need not carry them back).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum OptionError {
    #[error("option {key} must be {want}")]
    WrongType { key: String, want: &'static str },
    #[error("option {key}: strings are limited to {MAX_STRING} bytes")]
    StringTooLong { key: String },
    #[error("option {key}: at most {MAX_LIST} entries")]
    ListTooLong { key: String },
    #[error("labels: at most {MAX_LABELS}, keys 1-256 bytes, values up to 4096 bytes")]
    Labels,
    #[error("option args must not be empty")]
    EmptyArgs,
    #[error("option env: {0:?} is not NAME=VALUE")]
    EnvEntry(String),
    #[error("option workdir {0:?} must be an absolute path")]
    RelativeWorkdir(String),
    #[error("option memory {0} is too large")]
    MemoryTooLarge(u64),
    #[error("option cpus {0} must be > 0 and ≤ 4096")]
    CpusOutOfRange(f64),
    #[error("option notify_socket {0:?} must be an absolute socket path")]
    NotifySocket(String),
    #[error("option {key} must be 1-1024 bytes")]
    NameLength { key: String },
    #[error("option log_unit {0:?} is not a unit name")]
    LogUnit(String),
    /// Not the whole list: with every option it outgrew a readable reply.
    #[error("unknown option {0:?}{hint} (the options: CreateContainer in docs/api.md)", hint = nearest_hint(.0))]
    Unknown(String),
    #[error("option user goes with image (a bundle's config.json says its user)")]
    UserWithoutImage,
    #[error("option network {0:?}: want none, host, container:<id> or a network name")]
    Network(String),
    #[error("option {key} {value:?}: want private, host or container:<id>")]
    Namespace { key: String, value: String },
    #[error("option ports: {0}")]
    Port(berth_net::PortError),
    #[error("{0}")]
    NetFile(berth_net::files::FileError),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Listen(#[from] crate::sockets::ListenError),
    #[error(transparent)]
    Security(#[from] security::SecurityError),
    #[error("option restart {0:?}: want no, on-failure[:N], always or unless-stopped")]
    Restart(String),
    #[error("option {0}")]
    Health(String),
    #[error(transparent)]
    Mount(#[from] storage::MountError),
    #[error("option spec: not an OCI runtime spec: {0}")]
    Spec(String),
    #[error("option spec goes with image (berthd points its root at the image's rootfs)")]
    SpecWithoutImage,
    #[error(
        "option slice {0:?}: want a systemd slice name such as kubepods-besteffort-pod<uid>.slice"
    )]
    Slice(String),
    #[error("option log_path {0:?} must be an absolute file path without '..'")]
    LogPath(String),
    #[error("option {key} {why}")]
    Resource { key: String, why: &'static str },
    #[error("option {key} {value:?}: want a CPU or node list such as 0-3,8")]
    CpuList { key: String, value: String },
    #[error(
        "unknown option {0:?} (UpdateContainer takes {keys})",
        keys = resources::UPDATE_KEYS
    )]
    UnknownUpdate(String),
    #[error("nothing to update: give at least one of {keys}", keys = resources::UPDATE_KEYS)]
    NothingToUpdate,
}

impl From<OptionError> for crate::error::Error {
    fn from(e: OptionError) -> Self {
        crate::error::Error::InvalidArgument(e.to_string())
    }
}

/// An `a{sv}` option's value as `T`, or InvalidArgument naming the key and
/// the D-Bus type it must have (`want`). Every method's options use it.
pub fn get<T>(key: &str, value: &OwnedValue, want: &'static str) -> crate::error::Result<T>
where
    T: TryFrom<OwnedValue>,
{
    Ok(typed(key, value, want)?)
}

pub(crate) fn typed<T>(key: &str, value: &OwnedValue, want: &'static str) -> Result<T, OptionError>
where
    T: TryFrom<OwnedValue>,
{
    value
        .try_clone()
        .ok()
        .and_then(|v| T::try_from(v).ok())
        .ok_or_else(|| OptionError::WrongType {
            key: key.into(),
            want,
        })
}

pub(crate) fn check_string(key: &str, s: &str) -> Result<(), OptionError> {
    match s.len() > MAX_STRING {
        true => Err(OptionError::StringTooLong { key: key.into() }),
        false => Ok(()),
    }
}

pub(crate) fn check_list(key: &str, list: &[String]) -> Result<(), OptionError> {
    if list.len() > MAX_LIST {
        return Err(OptionError::ListTooLong { key: key.into() });
    }
    list.iter().try_for_each(|s| check_string(key, s))
}

/// " (did you mean \"memory\"?)" for a key a typo away from a known one.
fn nearest_hint(key: &str) -> String {
    KNOWN
        .split(',')
        .map(str::trim)
        .map(|k| (strsim::normalized_damerau_levenshtein(key, k), k))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| format!(" (did you mean {k:?}?)"))
        .unwrap_or_default()
}

/// Whether `u` may name a systemd unit (unit_name_is_valid's alphabet).
fn is_unit_name(u: &str) -> bool {
    !u.is_empty()
        && u.len() <= 256
        && u.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"@.-_:\\".contains(&b))
}

impl CreateOptions {
    pub fn parse(options: &HashMap<String, OwnedValue>) -> Result<CreateOptions, OptionError> {
        let mut r = CreateOptions::default();
        for (key, value) in options {
            r.set(key, value)?;
        }
        if r.user.is_some() && r.image.is_none() {
            return Err(OptionError::UserWithoutImage);
        }
        if r.cri.spec.is_some() && r.image.is_none() {
            return Err(OptionError::SpecWithoutImage);
        }
        r.net.check()?;
        if !r.security.group_names.is_empty() && r.image.is_none() {
            return Err(OptionError::Conflict(
                "option group_add: group names go with image (a bundle takes gids)".into(),
            ));
        }
        if r.security.entrypoint.is_some() && r.image.is_none() {
            return Err(OptionError::Conflict(
                "option entrypoint goes with image (a bundle's config.json says its args)".into(),
            ));
        }
        for (k, v) in r.security.stop_labels() {
            r.labels.insert(k.into(), v);
        }
        r.lifecycle.health()?;
        if r.lifecycle.restart != crate::restart::RestartPolicy::No && !r.listen.is_empty() {
            // A restart cannot hand the sockets over again: berthd has them no more.
            return Err(OptionError::Conflict(
                "option restart goes not with listen_fds (the sockets are passed once)".into(),
            ));
        }
        let restarts = r.lifecycle.restart != crate::restart::RestartPolicy::No;
        r.ns.check(r.net.hostname.as_deref(), restarts)?;
        r.storage.check()?;
        // After every option: `env` replaces the list when it comes.
        r.env.extend(r.listen.env()?);
        Ok(r)
    }

    /// Takes one option, checked.
    fn set(&mut self, key: &str, value: &OwnedValue) -> Result<(), OptionError> {
        match key {
            "labels" => {
                let map: HashMap<String, String> = typed(key, value, "a{ss}")?;
                if map.len() > MAX_LABELS
                    || map
                        .iter()
                        .any(|(k, v)| k.is_empty() || k.len() > 256 || v.len() > 4096)
                {
                    return Err(OptionError::Labels);
                }
                self.labels = map.into_iter().collect();
            }
            "args" => {
                let args: Vec<String> = typed(key, value, "as")?;
                check_list(key, &args)?;
                if args.is_empty() {
                    return Err(OptionError::EmptyArgs);
                }
                self.args = Some(args);
            }
            "env" => {
                let env: Vec<String> = typed(key, value, "as")?;
                check_list(key, &env)?;
                if let Some(bad) = env.iter().find(|e| !e.contains('=') || e.starts_with('=')) {
                    return Err(OptionError::EnvEntry(brief(bad).into()));
                }
                self.env = env;
            }
            "terminal" => self.terminal = Some(typed(key, value, "b")?),
            "stdin" => self.stdin = typed(key, value, "b")?,
            "workdir" => {
                let w: String = typed(key, value, "s")?;
                check_string(key, &w)?;
                if !w.starts_with('/') {
                    return Err(OptionError::RelativeWorkdir(brief(&w).into()));
                }
                self.workdir = Some(w);
            }
            "memory" => {
                let m: u64 = typed(key, value, "t (bytes)")?;
                // The spec's memory.limit is an int64.
                let m = i64::try_from(m).map_err(|_| OptionError::MemoryTooLarge(m))?;
                self.memory = Some(m);
            }
            "cpus" => {
                let c: f64 = typed(key, value, "d")?;
                if !(c.is_finite() && c > 0.0 && c <= 4096.0) {
                    return Err(OptionError::CpusOutOfRange(c));
                }
                self.cpus = Some(c);
            }
            "pids_limit" => self.pids_limit = Some(typed(key, value, "x")?),
            "notify_socket" => {
                let s: String = typed(key, value, "s")?;
                check_string(key, &s)?;
                // Its directory is what gets bound: a bare "/" has none.
                let p = Path::new(&s);
                if !p.is_absolute() || p.file_name().is_none() {
                    return Err(OptionError::NotifySocket(brief(&s).into()));
                }
                self.notify_socket = Some(s);
            }
            "image" | "user" => {
                let v: String = typed(key, value, "s")?;
                if v.is_empty() || v.len() > 1024 {
                    return Err(OptionError::NameLength { key: key.into() });
                }
                match key {
                    "image" => self.image = Some(v),
                    _ => self.user = Some(v),
                }
            }
            "log_unit" => {
                let u: String = typed(key, value, "s")?;
                if !is_unit_name(&u) {
                    return Err(OptionError::LogUnit(brief(&u).into()));
                }
                self.log_unit = Some(u);
            }
            k if net::KEYS.contains(&k) => self.net.set(k, value)?,
            k if namespaces::KEYS.contains(&k) => self.ns.set(k, value)?,
            k if security::KEYS.contains(&k) => self.security.set(k, value)?,
            k if lifecycle::KEYS.contains(&k) => self.lifecycle.set(k, value)?,
            k if storage::KEYS.contains(&k) => self.storage.set(k, value)?,
            k if cri::KEYS.contains(&k) => self.cri.set(k, value)?,
            k if resources::KEYS.contains(&k) => self.res.set(k, value)?,
            "listen_fds" => self.listen.set_fds(value)?,
            "listen_fdnames" => self.listen.set_names(value)?,
            other => return Err(OptionError::Unknown(brief(other).into())),
        }
        Ok(())
    }

    /// Whether the spec needs a rewritten copy.
    pub fn changes_spec(&self) -> bool {
        self.args.is_some()
            || !self.env.is_empty()
            || self.terminal.is_some()
            || self.workdir.is_some()
            || self.memory.is_some()
            || self.cpus.is_some()
            || self.pids_limit.is_some()
            || self.notify_socket.is_some()
            || self.net_spec.is_some()
            || self.ns_spec.is_some()
            || self.security.changes_spec()
            || self.storage_spec.is_some()
            || self.cgroups_path.is_some()
            || !self.res.is_empty()
    }
}
