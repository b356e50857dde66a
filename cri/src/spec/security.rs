//! Capabilities (containerd's default set, add/drop, ALL, privileged) and
//! seccomp (RuntimeDefault → berthd's annotation, Unconfined, Localhost).

use std::collections::HashMap;
use std::path::Path;

use oci_spec::runtime::{Capability, LinuxCapabilities, LinuxSeccomp, Spec};

use super::SECCOMP_ANNOTATION;
use crate::error::{CriError, Result};

/// containerd's default capabilities (docker's, less NET_RAW).
const DEFAULT_CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

fn cap(name: &str) -> Result<Capability> {
    let n = name.to_ascii_uppercase();
    let n = if n.starts_with("CAP_") {
        n
    } else {
        format!("CAP_{n}")
    };
    // The spec's spelling (CAP_CHOWN) is oci-spec's serde name.
    serde_json::from_value(serde_json::Value::String(n))
        .map_err(|_| CriError::InvalidArgument(format!("unknown capability {name:?}")))
}

pub(super) fn capabilities(
    sc: &crate::api::LinuxContainerSecurityContext,
) -> Result<LinuxCapabilities> {
    use std::collections::HashSet;
    let mut set: HashSet<Capability> = if sc.privileged {
        all_caps()
    } else {
        DEFAULT_CAPS.iter().map(|c| cap(c)).collect::<Result<_>>()?
    };
    if let Some(c) = &sc.capabilities {
        if c.drop_capabilities
            .iter()
            .any(|d| d.eq_ignore_ascii_case("ALL"))
        {
            set.clear();
        }
        for d in c
            .drop_capabilities
            .iter()
            .filter(|d| !d.eq_ignore_ascii_case("ALL"))
        {
            set.remove(&cap(d)?);
        }
        if c.add_capabilities
            .iter()
            .any(|a| a.eq_ignore_ascii_case("ALL"))
        {
            set = all_caps();
        }
        for a in c
            .add_capabilities
            .iter()
            .filter(|a| !a.eq_ignore_ascii_case("ALL"))
        {
            set.insert(cap(a)?);
        }
    }
    let mut caps = LinuxCapabilities::default();
    caps.set_bounding(Some(set.clone()))
        .set_effective(Some(set.clone()))
        .set_permitted(Some(set))
        .set_inheritable(None)
        .set_ambient(None);
    Ok(caps)
}

fn all_caps() -> std::collections::HashSet<Capability> {
    // Every capability this process may hand on (its bounding set, as
    // containerd's WithAllCurrentCapabilities): asking for one outside it
    // fails the container's capset.
    let bounding = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("CapBnd:"))?.to_string();
            u64::from_str_radix(line.trim_start_matches("CapBnd:").trim(), 16).ok()
        })
        .unwrap_or(u64::MAX);
    let last: u32 = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    (0..=last.min(63))
        .filter(|n| bounding & (1u64 << n) != 0)
        .filter_map(|n| {
            let name = CAP_NAMES.get(n as usize)?;
            cap(name).ok()
        })
        .collect()
}

const CAP_NAMES: &[&str] = &[
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

pub(super) fn seccomp(
    spec: &mut Spec,
    sc: &crate::api::LinuxContainerSecurityContext,
    ann: &mut HashMap<String, String>,
) -> Result<()> {
    if sc.privileged {
        return Ok(());
    }
    // CRI's SecurityProfile.ProfileType: 0 RuntimeDefault, 1 Unconfined,
    // 2 Localhost. No profile at all: unconfined (the kubelet's default).
    match &sc.seccomp {
        None => Ok(()),
        Some(p) => match p.profile_type {
            0 => {
                ann.insert(SECCOMP_ANNOTATION.into(), "runtime/default".into());
                Ok(())
            }
            1 => Ok(()),
            2 => {
                let path = Path::new(&p.localhost_ref);
                if !path.is_absolute() {
                    return Err(CriError::InvalidArgument(format!(
                        "seccomp localhost profile {:?} must be an absolute path",
                        p.localhost_ref
                    )));
                }
                let text = std::fs::read_to_string(path).map_err(|e| {
                    CriError::InvalidArgument(format!("seccomp profile {}: {e}", path.display()))
                })?;
                let s: LinuxSeccomp = serde_json::from_str(&text).map_err(|e| {
                    CriError::InvalidArgument(format!("seccomp profile {}: {e}", path.display()))
                })?;
                let linux = spec.linux_mut().get_or_insert_with(Default::default);
                linux.set_seccomp(Some(s));
                Ok(())
            }
            other => Err(CriError::InvalidArgument(format!(
                "seccomp profile type {other} is unknown"
            ))),
        },
    }
}
