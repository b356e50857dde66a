//! CreateContainer's security and process options, podman's names:
//! `cap_add`, `cap_drop` (as: names with or without CAP_, or ALL),
//! `privileged` (b), `security_opt` (as: no-new-privileges[=BOOL],
//! seccomp=unconfined, mask=PATHS, unmask=PATHS|ALL), `seccomp_profile`
//! (s: a profile's JSON, which berthctl reads from the file a user names),
//! `group_add` (as: gids), `ulimits` (as: NAME=SOFT[:HARD]), `sysctls`
//! (a{ss}: namespaced keys only), `annotations` (a{ss}), `entrypoint` (as),
//! `stop_signal` (s), `stop_timeout` (u), `init` (b: catatonit as pid 1,
//! see bundle::init). Checked here, before anything is
//! made; bundle::security applies them to the spec.

use std::collections::{BTreeMap, HashMap};

use oci_spec::runtime::Capability;
use serde_json::Value;
use zbus::zvariant::OwnedValue;

use super::{check_list, check_string, typed, OptionError};
use crate::daemon::brief;

pub const KEYS: &[&str] = &[
    "cap_add",
    "cap_drop",
    "privileged",
    "security_opt",
    "seccomp_profile",
    "group_add",
    "ulimits",
    "sysctls",
    "annotations",
    "entrypoint",
    "stop_signal",
    "stop_timeout",
    "init",
];

/// Labels the stop options are recorded as, read back by `berthctl stop`
/// (and shown by inspect).
pub const STOP_SIGNAL_LABEL: &str = "io.berth.stop-signal";
pub const STOP_TIMEOUT_LABEL: &str = "io.berth.stop-timeout";

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SecurityError {
    #[error("option {key}: unknown capability {name:?}")]
    UnknownCap { key: &'static str, name: String },
    #[error("option security_opt: {0:?} is not one of no-new-privileges[=true|false], seccomp=unconfined, mask=PATH[:PATH…], unmask=PATH[:PATH…]|ALL, apparmor=unconfined, label=disable (a seccomp=PROFILE file is read by the client and sent as seccomp_profile)")]
    SecurityOpt(String),
    #[error("option security_opt: {0:?}: paths must be absolute")]
    MaskPath(String),
    #[error("option seccomp_profile: {0}")]
    Profile(String),
    #[error("option group_add: {0:?} is not a group id or a group name")]
    Group(String),
    #[error("option ulimits: {0:?} is not NAME=SOFT[:HARD] (NAME one of {names}; -1 for unlimited; soft ≤ hard)", names = RLIMITS.join(", "))]
    Ulimit(String),
    #[error("option sysctls: {0:?} is not namespaced: only fs.mqueue.*, kernel.msgmax, kernel.msgmnb, kernel.msgmni, kernel.sem, kernel.shmall, kernel.shmmax, kernel.shmmni, kernel.shm_rmid_forced, kernel.domainname and net.* may be set in a container")]
    Sysctl(String),
    #[error(
        "option sysctls: {0:?}: keys are dotted names of letters, digits and _-, values one line"
    )]
    SysctlSyntax(String),
    #[error("option annotations: at most 256, keys 1-256 bytes, values up to 4096 bytes")]
    Annotations,
    #[error("option stop_signal: {0:?} is not a signal (a name like SIGINT or INT, or a number)")]
    Signal(String),
}

/// What `seccomp=`/`seccomp_profile` asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Seccomp {
    Unconfined,
    /// A caller's profile (docker/containers format or OCI), checked.
    Profile(Value),
}

/// `ALL` or a list of capabilities.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CapList {
    pub all: bool,
    pub caps: Vec<Capability>,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecurityOptions {
    pub cap_add: CapList,
    pub cap_drop: CapList,
    /// All capabilities, all host devices, no masked or read-only paths,
    /// no seccomp.
    pub privileged: bool,
    pub no_new_privileges: Option<bool>,
    pub seccomp: Option<Seccomp>,
    pub mask: Vec<String>,
    /// Paths taken out of the masked (and read-only) paths; "ALL" for all.
    pub unmask: Vec<String>,
    pub group_add: Vec<u32>,
    /// Group names, resolved in an image's /etc/group (images only).
    pub group_names: Vec<String>,
    /// (RLIMIT_NAME, soft, hard).
    pub ulimits: Vec<(String, u64, u64)>,
    pub sysctls: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// Replaces the image's Entrypoint (images only); empty clears it.
    pub entrypoint: Option<Vec<String>>,
    /// Signal number.
    pub stop_signal: Option<i32>,
    pub stop_timeout: Option<u32>,
    /// A reaper as the container's pid 1 (a copy of catatonit).
    pub init: bool,
}

/// ulimit names as podman and docker spell them.
pub const RLIMITS: &[&str] = &[
    "as",
    "core",
    "cpu",
    "data",
    "fsize",
    "locks",
    "memlock",
    "msgqueue",
    "nice",
    "nofile",
    "nproc",
    "rss",
    "rtprio",
    "rttime",
    "sigpending",
    "stack",
];

/// "sys_admin", "CAP_SYS_ADMIN" → the capability.
pub fn parse_cap(key: &'static str, name: &str) -> Result<Capability, SecurityError> {
    let up = name.to_ascii_uppercase();
    let bare = up.strip_prefix("CAP_").unwrap_or(&up);
    // Capability's FromStr is strum's SCREAMING_SNAKE_CASE of its variants.
    bare.parse::<Capability>()
        .ok()
        .filter(|_| !bare.is_empty())
        .ok_or_else(|| SecurityError::UnknownCap {
            key,
            name: brief(name).into(),
        })
}

fn cap_list(key: &'static str, names: &[String]) -> Result<CapList, SecurityError> {
    let mut l = CapList::default();
    for n in names {
        match n.eq_ignore_ascii_case("all") {
            true => l.all = true,
            false => l.caps.push(parse_cap(key, n)?),
        }
    }
    Ok(l)
}

/// "nofile=1024:2048" → ("RLIMIT_NOFILE", 1024, 2048); -1 is unlimited.
pub fn parse_ulimit(s: &str) -> Result<(String, u64, u64), SecurityError> {
    let bad = || SecurityError::Ulimit(brief(s).into());
    let (name, limits) = s.split_once('=').ok_or_else(bad)?;
    if !RLIMITS.contains(&name) {
        return Err(bad());
    }
    let num = |v: &str| -> Result<u64, SecurityError> {
        match v {
            "-1" => Ok(u64::MAX),
            v => v.parse().map_err(|_| bad()),
        }
    };
    let (soft, hard) = match limits.split_once(':') {
        Some((s, h)) => (num(s)?, num(h)?),
        None => (num(limits)?, num(limits)?),
    };
    if soft > hard {
        return Err(bad());
    }
    Ok((format!("RLIMIT_{}", name.to_ascii_uppercase()), soft, hard))
}

/// Which namespace a sysctl belongs to ("ipc", "uts", "net"), or None for
/// one that is the host's whatever namespaces the container has (runc and
/// docker refuse those too).
pub fn sysctl_namespace(key: &str) -> Option<&'static str> {
    const IPC: &[&str] = &[
        "kernel.msgmax",
        "kernel.msgmnb",
        "kernel.msgmni",
        "kernel.sem",
        "kernel.shmall",
        "kernel.shmmax",
        "kernel.shmmni",
        "kernel.shm_rmid_forced",
    ];
    if IPC.contains(&key) || key.starts_with("fs.mqueue.") {
        Some("ipc")
    } else if key == "kernel.domainname" {
        // kernel.hostname is set through the hostname option.
        Some("uts")
    } else if key.starts_with("net.") {
        Some("net")
    } else {
        None
    }
}

fn check_sysctl(key: &str, value: &str) -> Result<(), SecurityError> {
    let ok_key = !key.is_empty()
        && key.len() <= 256
        && !key.contains("..")
        && !key.starts_with('.')
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if !ok_key || value.len() > 4096 || value.contains('\n') || value.contains('\0') {
        return Err(SecurityError::SysctlSyntax(brief(key).into()));
    }
    match sysctl_namespace(key) {
        Some(_) => Ok(()),
        None => Err(SecurityError::Sysctl(brief(key).into())),
    }
}

/// A name /etc/group may hold (shadow-utils' rule, loosely: no `:`,
/// no whitespace, not starting with `-`).
fn is_group_name(g: &str) -> bool {
    !g.is_empty()
        && g.len() <= 256
        && !g.starts_with('-')
        && g.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-$".contains(&b))
}

/// "SIGINT", "int", "2" → 2.
pub fn parse_signal(s: &str) -> Result<i32, SecurityError> {
    let bad = || SecurityError::Signal(brief(s).into());
    if let Ok(n) = s.parse::<i32>() {
        return nix::sys::signal::Signal::try_from(n)
            .map(|s| s as i32)
            .map_err(|_| bad());
    }
    let up = s.to_ascii_uppercase();
    let name = match up.starts_with("SIG") {
        true => up,
        false => format!("SIG{up}"),
    };
    name.parse::<nix::sys::signal::Signal>()
        .map(|s| s as i32)
        .map_err(|_| bad())
}

impl SecurityOptions {
    fn security_opt(&mut self, opt: &str) -> Result<(), SecurityError> {
        let bad = || SecurityError::SecurityOpt(brief(opt).into());
        let paths = |list: &str| -> Result<Vec<String>, SecurityError> {
            let l: Vec<String> = list.split(':').map(String::from).collect();
            match l.iter().all(|p| p.starts_with('/')) {
                true => Ok(l),
                false => Err(SecurityError::MaskPath(brief(opt).into())),
            }
        };
        match opt.split_once(['=', ':']) {
            None if opt == "no-new-privileges" => self.no_new_privileges = Some(true),
            Some(("no-new-privileges", v)) => {
                self.no_new_privileges = Some(v.parse().map_err(|_| bad())?)
            }
            Some(("seccomp", "unconfined")) => self.seccomp = Some(Seccomp::Unconfined),
            // berth applies no AppArmor profile or SELinux label of its own:
            // what podman scripts pass to turn them off is already so.
            Some(("apparmor", "unconfined")) | Some(("label", "disable")) => {}
            Some(("mask", list)) => self.mask.extend(paths(list)?),
            Some(("unmask", "ALL")) => self.unmask.push("ALL".into()),
            Some(("unmask", list)) => self.unmask.extend(paths(list)?),
            _ => return Err(bad()),
        }
        Ok(())
    }

    pub fn set(&mut self, key: &str, value: &OwnedValue) -> Result<(), OptionError> {
        let list = |value: &OwnedValue| -> Result<Vec<String>, OptionError> {
            let l: Vec<String> = typed(key, value, "as")?;
            check_list(key, &l)?;
            Ok(l)
        };
        let map = |value: &OwnedValue| -> Result<BTreeMap<String, String>, OptionError> {
            let m: HashMap<String, String> = typed(key, value, "a{ss}")?;
            if m.len() > 256
                || m.iter()
                    .any(|(k, v)| k.is_empty() || k.len() > 256 || v.len() > 4096)
            {
                return Err(match key {
                    "annotations" => SecurityError::Annotations.into(),
                    _ => SecurityError::SysctlSyntax(String::new()).into(),
                });
            }
            Ok(m.into_iter().collect())
        };
        match key {
            "cap_add" => self.cap_add = cap_list("cap_add", &list(value)?)?,
            "cap_drop" => self.cap_drop = cap_list("cap_drop", &list(value)?)?,
            "privileged" => self.privileged = typed(key, value, "b")?,
            "security_opt" => list(value)?.iter().try_for_each(|o| self.security_opt(o))?,
            "seccomp_profile" => {
                let text: String = typed(key, value, "s")?;
                check_string(key, &text)?;
                let profile = crate::seccomp_profile::parse_profile(&text)
                    .map_err(|e| SecurityError::Profile(e.to_string()))?;
                self.seccomp = Some(Seccomp::Profile(profile));
            }
            "group_add" => {
                let (mut ids, mut names) = (Vec::new(), Vec::new());
                for g in list(value)? {
                    match g.parse::<u32>() {
                        Ok(id) => ids.push(id),
                        Err(_) if is_group_name(&g) => names.push(g),
                        Err(_) => return Err(SecurityError::Group(brief(&g).into()).into()),
                    }
                }
                (self.group_add, self.group_names) = (ids, names);
            }
            "ulimits" => {
                self.ulimits = list(value)?
                    .iter()
                    .map(|u| parse_ulimit(u))
                    .collect::<Result<_, _>>()?
            }
            "sysctls" => {
                let m = map(value)?;
                m.iter().try_for_each(|(k, v)| check_sysctl(k, v))?;
                self.sysctls = m;
            }
            "annotations" => self.annotations = map(value)?,
            "entrypoint" => self.entrypoint = Some(list(value)?),
            "stop_signal" => {
                let s: String = typed(key, value, "s")?;
                self.stop_signal = Some(parse_signal(&s)?);
            }
            "stop_timeout" => self.stop_timeout = Some(typed(key, value, "u")?),
            "init" => self.init = typed(key, value, "b")?,
            _ => return Err(OptionError::Unknown(brief(key).into())),
        }
        Ok(())
    }

    /// Whether any option here edits the spec.
    pub fn changes_spec(&self) -> bool {
        self.privileged
            || self.cap_add != CapList::default()
            || self.cap_drop != CapList::default()
            || self.no_new_privileges.is_some()
            || self.seccomp.is_some()
            || !self.mask.is_empty()
            || !self.unmask.is_empty()
            || !self.group_add.is_empty()
            || !self.ulimits.is_empty()
            || !self.sysctls.is_empty()
            || !self.annotations.is_empty()
            || self.init
    }

    /// The labels the stop options are kept as.
    pub fn stop_labels(&self) -> Vec<(&'static str, String)> {
        let mut l = Vec::new();
        if let Some(s) = self.stop_signal {
            l.push((STOP_SIGNAL_LABEL, s.to_string()));
        }
        if let Some(t) = self.stop_timeout {
            l.push((STOP_TIMEOUT_LABEL, t.to_string()));
        }
        l
    }
}

#[cfg(test)]
#[path = "security_tests.rs"]
mod tests;
