//! CreateContainer's storage options, in podman's syntax: `volumes` (as,
//! `-v SRC:DST[:OPTS]`), `mounts` (as, `--mount type=…,src=…,dst=…`),
//! `tmpfs` (as, `DST[:OPTS]`), `read_only` (b), `shm_size` (t, bytes),
//! `devices` (as, `HOST[:CONTAINER][:rwm]`).
//! Checked here, before anything is made; what touches the host (a bind
//! source exists, a volume is made) is volumes::plan's.

use std::path::{Component, Path, PathBuf};

use zbus::zvariant::OwnedValue;

use super::{check_list, typed, OptionError};
use crate::daemon::brief;

pub const KEYS: &[&str] = &[
    "volumes",
    "mounts",
    "tmpfs",
    "read_only",
    "shm_size",
    "devices",
];

/// What is mounted at a destination.
#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    /// A host path (absolute).
    Bind(PathBuf),
    /// A named volume (made on first use).
    Volume(String),
    Tmpfs,
}

/// One mount asked for.
#[derive(Debug, Clone, PartialEq)]
pub struct MountRequest {
    pub source: Source,
    /// Absolute, normalized, inside the container.
    pub dest: String,
    pub readonly: bool,
    /// mount(2) options beyond ro (nosuid, propagation, size=, mode=, …).
    pub options: Vec<String>,
    /// A volume: do not copy the image's content into it when empty.
    pub nocopy: bool,
}

/// One host device asked for (`--device`).
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRequest {
    pub host: String,
    /// Where it appears in the container (default: the host's path).
    pub path: String,
    /// The cgroup access: a non-empty subset of "rwm".
    pub access: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct StorageOptions {
    pub mounts: Vec<MountRequest>,
    pub devices: Vec<DeviceRequest>,
    pub read_only: bool,
    /// /dev/shm's size, bytes.
    pub shm_size: Option<u64>,
}

/// Why a mount was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MountError {
    #[error("{0:?}: want SRC:DST[:OPTIONS] (SRC an absolute host path or a volume name)")]
    Syntax(String),
    #[error("{0:?}: a host path must be absolute (a volume name has no '/')")]
    RelativeSource(String),
    #[error("{0:?}: a volume name is [A-Za-z0-9][A-Za-z0-9_.-]*, at most 128 bytes")]
    VolumeName(String),
    #[error("destination {0:?} must be an absolute path")]
    RelativeDest(String),
    #[error("destination {0:?}: nothing may be mounted over / or /proc")]
    ForbiddenDest(String),
    #[error("destination {0:?} is mounted twice")]
    DuplicateDest(String),
    #[error("{entry:?}: unknown option {option:?}")]
    UnknownOption { entry: String, option: String },
    #[error("--mount {0:?}: want type=bind|volume|tmpfs,source=…,destination=…[,ro]")]
    MountSyntax(String),
    #[error("option shm_size must be > 0")]
    ShmSize,
    #[error(
        "device {0:?}: want HOST[:CONTAINER][:PERMISSIONS], absolute paths, permissions of r, w, m"
    )]
    Device(String),
}

/// The mount(2) options a `-v`/`--tmpfs` entry may carry.
const PASSED: &[&str] = &[
    "nosuid",
    "suid",
    "nodev",
    "dev",
    "noexec",
    "exec",
    "private",
    "rprivate",
    "shared",
    "rshared",
    "slave",
    "rslave",
    "bind",
    "rbind",
    "noatime",
    "relatime",
    "strictatime",
];

/// Whether `name` may name a volume (docker's and podman's alphabet).
pub fn check_volume_name(name: &str) -> Result<(), MountError> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    match ok {
        true => Ok(()),
        false => Err(MountError::VolumeName(brief(name).into())),
    }
}

/// An absolute destination, lexically normalized (`..` stops at `/`); not
/// `/` nor under /proc.
fn check_dest(dest: &str) -> Result<String, MountError> {
    if !dest.starts_with('/') {
        return Err(MountError::RelativeDest(brief(dest).into()));
    }
    let mut parts: Vec<&str> = Vec::new();
    for c in Path::new(dest).components() {
        match c {
            Component::Normal(n) => parts.push(n.to_str().unwrap_or_default()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    if parts.is_empty() || parts[0] == "proc" {
        return Err(MountError::ForbiddenDest(brief(dest).into()));
    }
    Ok(format!("/{}", parts.join("/")))
}

fn source(src: &str, entry: &str) -> Result<Source, MountError> {
    if src.starts_with('/') {
        return Ok(Source::Bind(PathBuf::from(src)));
    }
    if src.contains('/') || src.starts_with('.') || src.starts_with('~') {
        return Err(MountError::RelativeSource(brief(entry).into()));
    }
    check_volume_name(src)?;
    Ok(Source::Volume(src.into()))
}

/// `-v SRC:DST[:OPTS]`: OPTS comma-separated: ro, rro, rw, z/Z (SELinux labels:
/// accepted, nothing to do without SELinux), nocopy, and [`PASSED`].
pub fn parse_volume(entry: &str) -> Result<MountRequest, MountError> {
    let parts: Vec<&str> = entry.split(':').collect();
    let (src, dest, opts) = match parts.as_slice() {
        [s, d] => (*s, *d, ""),
        [s, d, o] => (*s, *d, *o),
        _ => return Err(MountError::Syntax(brief(entry).into())),
    };
    if src.is_empty() {
        return Err(MountError::Syntax(brief(entry).into()));
    }
    let mut m = MountRequest {
        source: source(src, entry)?,
        dest: check_dest(dest)?,
        readonly: false,
        options: Vec::new(),
        nocopy: false,
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.readonly = true,
            "rw" => m.readonly = false,
            // Podman's recursive read-only: submounts too (berth-init's
            // mount_setattr with AT_RECURSIVE).
            "rro" => {
                m.readonly = true;
                m.options.push(o.into());
            }
            "z" | "Z" => {}
            "nocopy" => m.nocopy = true,
            o if PASSED.contains(&o) => m.options.push(o.into()),
            other => {
                return Err(MountError::UnknownOption {
                    entry: brief(entry).into(),
                    option: brief(other).into(),
                })
            }
        }
    }
    Ok(m)
}

/// `--tmpfs DST[:OPTS]`: OPTS are tmpfs's (size=, mode=, ro, noexec, …).
pub fn parse_tmpfs(entry: &str) -> Result<MountRequest, MountError> {
    let (dest, opts) = entry.split_once(':').unwrap_or((entry, ""));
    let mut m = MountRequest {
        source: Source::Tmpfs,
        dest: check_dest(dest)?,
        readonly: false,
        options: Vec::new(),
        nocopy: false,
    };
    for o in opts.split(',').filter(|o| !o.is_empty()) {
        match o {
            "ro" => m.readonly = true,
            "rw" => m.readonly = false,
            o if PASSED.contains(&o) => m.options.push(o.into()),
            o if tmpfs_data(o) => m.options.push(o.into()),
            other => {
                return Err(MountError::UnknownOption {
                    entry: brief(entry).into(),
                    option: brief(other).into(),
                })
            }
        }
    }
    Ok(m)
}

/// tmpfs's own options: size=N[kmg%], mode=octal, nr_inodes=N, uid=N, gid=N.
fn tmpfs_data(o: &str) -> bool {
    let Some((k, v)) = o.split_once('=') else {
        return false;
    };
    let digits = |v: &str| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit());
    match k {
        "size" | "nr_inodes" => {
            let n = v.trim_end_matches(['k', 'K', 'm', 'M', 'g', 'G', '%']);
            digits(n) && v.len() - n.len() <= 1
        }
        "mode" => !v.is_empty() && v.len() <= 4 && v.bytes().all(|b| (b'0'..=b'7').contains(&b)),
        "uid" | "gid" => digits(v),
        _ => false,
    }
}

/// `--mount type=bind|volume|tmpfs,source=…,destination=…[,ro][,…]`.
pub fn parse_mount(entry: &str) -> Result<MountRequest, MountError> {
    let bad = || MountError::MountSyntax(brief(entry).into());
    let (mut typ, mut src, mut dest) = (None, None, None);
    let (mut readonly, mut nocopy, mut options) = (false, false, Vec::new());
    for field in entry.split(',') {
        let (k, v) = field.split_once('=').unwrap_or((field, ""));
        match k {
            "type" => typ = Some(v),
            "source" | "src" => src = Some(v),
            "destination" | "dst" | "target" => dest = Some(v),
            "ro" | "readonly" => readonly = matches!(v, "" | "true" | "1"),
            "rw" => readonly = false,
            "relabel" | "z" | "Z" => {}
            "volume-nocopy" | "nocopy" => nocopy = matches!(v, "" | "true" | "1"),
            "bind-propagation" if PASSED.contains(&v) => options.push(v.into()),
            "tmpfs-size" => options.push(format!("size={v}")),
            "tmpfs-mode" => options.push(format!("mode={v}")),
            o if PASSED.contains(&o) => options.push(o.into()),
            other => {
                return Err(MountError::UnknownOption {
                    entry: brief(entry).into(),
                    option: brief(other).into(),
                })
            }
        }
    }
    let dest = check_dest(dest.ok_or_else(bad)?)?;
    let source = match (typ.ok_or_else(bad)?, src) {
        ("bind", Some(s)) if s.starts_with('/') => Source::Bind(s.into()),
        ("bind", Some(_)) => return Err(MountError::RelativeSource(brief(entry).into())),
        ("volume", Some(s)) => {
            check_volume_name(s)?;
            Source::Volume(s.into())
        }
        ("tmpfs", None) => Source::Tmpfs,
        _ => return Err(bad()),
    };
    if source == Source::Tmpfs {
        if let Some(o) = options.iter().find(|o| o.contains('=') && !tmpfs_data(o)) {
            return Err(MountError::UnknownOption {
                entry: brief(entry).into(),
                option: brief(o).into(),
            });
        }
    }
    Ok(MountRequest {
        source,
        dest,
        readonly,
        options,
        nocopy,
    })
}

/// `--device HOST[:CONTAINER][:rwm]`.
pub fn parse_device(entry: &str) -> Result<DeviceRequest, MountError> {
    let bad = || MountError::Device(brief(entry).into());
    let perms = |p: &str| {
        !p.is_empty() && p.len() <= 3 && p.chars().all(|c| "rwm".contains(c)) && {
            let mut v: Vec<char> = p.chars().collect();
            v.dedup();
            v.len() == p.len()
        }
    };
    let parts: Vec<&str> = entry.split(':').collect();
    let (host, path, access) = match parts.as_slice() {
        [h] => (*h, *h, "rwm"),
        [h, p] if perms(p) && !p.starts_with('/') => (*h, *h, *p),
        [h, p] => (*h, *p, "rwm"),
        [h, p, a] => (*h, *p, *a),
        _ => return Err(bad()),
    };
    if !host.starts_with('/') || !perms(access) {
        return Err(bad());
    }
    let path = check_dest(path).map_err(|_| bad())?;
    Ok(DeviceRequest {
        host: host.into(),
        path,
        access: access.into(),
    })
}

impl StorageOptions {
    pub fn any(&self) -> bool {
        !self.mounts.is_empty()
            || !self.devices.is_empty()
            || self.read_only
            || self.shm_size.is_some()
    }

    pub fn set(&mut self, key: &str, value: &OwnedValue) -> Result<(), OptionError> {
        let list = |value: &OwnedValue| -> Result<Vec<String>, OptionError> {
            let l: Vec<String> = typed(key, value, "as")?;
            check_list(key, &l)?;
            Ok(l)
        };
        let parse = |l: Vec<String>, f: fn(&str) -> Result<MountRequest, MountError>| {
            l.iter()
                .map(|e| f(e))
                .collect::<Result<Vec<_>, _>>()
                .map_err(OptionError::Mount)
        };
        // An a{sv} holds each key once: the three lists add up, and
        // check() sees them all.
        match key {
            "volumes" => self.mounts.extend(parse(list(value)?, parse_volume)?),
            "mounts" => self.mounts.extend(parse(list(value)?, parse_mount)?),
            "tmpfs" => self.mounts.extend(parse(list(value)?, parse_tmpfs)?),
            "devices" => {
                self.devices = list(value)?
                    .iter()
                    .map(|d| parse_device(d))
                    .collect::<Result<_, _>>()
                    .map_err(OptionError::Mount)?
            }
            "read_only" => self.read_only = typed(key, value, "b")?,
            "shm_size" => {
                let s: u64 = typed(key, value, "t (bytes)")?;
                if s == 0 {
                    return Err(OptionError::Mount(MountError::ShmSize));
                }
                self.shm_size = Some(s);
            }
            _ => return Err(OptionError::Unknown(brief(key).into())),
        }
        Ok(())
    }

    /// Two mounts on one destination are refused (which would win is
    /// nobody's guess).
    pub fn check(&self) -> Result<(), OptionError> {
        let mut seen = std::collections::HashSet::new();
        let dests = self.mounts.iter().map(|m| &m.dest);
        for d in dests.chain(self.devices.iter().map(|d| &d.path)) {
            if !seen.insert(d.as_str()) {
                return Err(OptionError::Mount(MountError::DuplicateDest(
                    brief(d).into(),
                )));
            }
        }
        Ok(())
    }

    /// The named volumes mounted, in order, once each.
    pub fn volume_names(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for m in &self.mounts {
            if let Source::Volume(n) = &m.source {
                if !out.contains(n) {
                    out.push(n.clone());
                }
            }
        }
        out
    }
}

#[cfg(test)]
#[path = "storage_tests.rs"]
mod tests;
