//! The security and process options applied to a spec: capabilities,
//! privileged, no_new_privileges, masked paths, groups, rlimits, sysctls,
//! annotations, and the seccomp profile — decided last, since which of the
//! default profile's rules apply depends on the capabilities kept.

use std::collections::HashSet;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capabilities, Capability, LinuxCapabilities, LinuxDeviceBuilder, LinuxDeviceCgroup,
    LinuxDeviceType, LinuxNamespaceType, PosixRlimitBuilder, PosixRlimitType, Spec,
};

use crate::options::security::{sysctl_namespace, Seccomp, SecurityOptions};
use crate::seccomp_profile::{self, ProfileError};

#[derive(Debug, thiserror::Error)]
pub enum SecurityApplyError {
    #[error(transparent)]
    Seccomp(#[from] ProfileError),
    #[error("option sysctls: {key} belongs to the {ns} namespace, which this container shares with the host")]
    SysctlHostNamespace { key: String, ns: &'static str },
    #[error("option ulimits: {0} is not known to this berth")]
    Rlimit(String),
}

/// Every capability berthd itself may hold (privileged, `ALL`): its own
/// bounding set — the kernel's all in a plain host, fewer where berthd
/// runs confined (a container can never get more than its runtime has).
pub fn all_caps() -> Capabilities {
    caps::read(None, caps::CapSet::Bounding)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|c| {
            let name = c.to_string();
            name.strip_prefix("CAP_").and_then(|n| n.parse().ok())
        })
        .collect()
}

/// Applies `sec` to `spec`; `image` says whether the spec was generated
/// from an image (which gets the default seccomp profile unless told
/// otherwise; a bundle keeps its own unless annotated runtime/default).
pub fn apply(
    sec: &SecurityOptions,
    image: bool,
    spec: &mut Spec,
) -> Result<(), SecurityApplyError> {
    edit_caps(sec, spec);
    if let Some(process) = spec.process_mut() {
        if let Some(nnp) = sec.no_new_privileges {
            process.set_no_new_privileges(Some(nnp));
        }
        if !sec.group_add.is_empty() {
            let mut user = process.user().clone();
            let mut gids = user.additional_gids().clone().unwrap_or_default();
            gids.extend(sec.group_add.iter().filter(|g| **g != user.gid()));
            gids.dedup();
            user.set_additional_gids(Some(gids));
            process.set_user(user);
        }
        if !sec.ulimits.is_empty() {
            let mut rlimits = process.rlimits().clone().unwrap_or_default();
            for (name, soft, hard) in &sec.ulimits {
                let typ: PosixRlimitType = serde_json::from_value(serde_json::json!(name))
                    .map_err(|_| SecurityApplyError::Rlimit(name.clone()))?;
                rlimits.retain(|r| r.typ() != typ);
                let r = PosixRlimitBuilder::default()
                    .typ(typ)
                    .soft(*soft)
                    .hard(*hard)
                    .build()
                    .map_err(|_| SecurityApplyError::Rlimit(name.clone()))?;
                rlimits.push(r);
            }
            process.set_rlimits(Some(rlimits));
        }
    }
    if !sec.annotations.is_empty() {
        let mut ann = spec.annotations().clone().unwrap_or_default();
        ann.extend(sec.annotations.clone());
        spec.set_annotations(Some(ann));
    }
    edit_sysctls(sec, spec)?;
    edit_masks(sec, spec);
    if sec.privileged {
        privileged_devices(spec);
    }
    edit_seccomp(sec, image, spec)
}

fn edit_caps(sec: &SecurityOptions, spec: &mut Spec) {
    let (add, drop) = (&sec.cap_add, &sec.cap_drop);
    if !sec.privileged && add.caps.is_empty() && drop.caps.is_empty() && !add.all && !drop.all {
        return;
    }
    let Some(process) = spec.process_mut() else {
        return;
    };
    let mut caps = process.capabilities().clone().unwrap_or_else(|| {
        let mut c = LinuxCapabilities::default();
        c.set_bounding(None)
            .set_effective(None)
            .set_inheritable(None)
            .set_permitted(None)
            .set_ambient(None);
        c
    });
    // podman's order: ALL first, then the names; a dropped name wins.
    let edit = |set: &Option<Capabilities>, grow: bool| -> Capabilities {
        let mut s = set.clone().unwrap_or_default();
        if grow && (sec.privileged || add.all) {
            s = all_caps();
        } else if drop.all {
            s.clear();
        }
        if grow {
            s.extend(add.caps.iter().copied());
        }
        drop.caps.iter().for_each(|c| {
            s.remove(c);
        });
        s
    };
    let bounding = edit(caps.bounding(), true);
    let effective = edit(caps.effective(), true);
    let permitted = edit(caps.permitted(), true);
    // Inheritable and ambient only lose capabilities (ambient must stay
    // within permitted ∩ inheritable).
    let inheritable = edit(caps.inheritable(), false);
    let ambient: HashSet<Capability> = edit(caps.ambient(), false)
        .into_iter()
        .filter(|c| permitted.contains(c) && inheritable.contains(c))
        .collect();
    caps.set_bounding(Some(bounding))
        .set_effective(Some(effective))
        .set_permitted(Some(permitted))
        .set_inheritable(Some(inheritable))
        .set_ambient(Some(ambient));
    process.set_capabilities(Some(caps));
}

/// Namespaced sysctls only (options::security checks the names); refused
/// when the container shares that namespace with the host.
fn edit_sysctls(sec: &SecurityOptions, spec: &mut Spec) -> Result<(), SecurityApplyError> {
    if sec.sysctls.is_empty() {
        return Ok(());
    }
    let linux = spec.linux_mut().get_or_insert_with(super::edit::bare_linux);
    let namespaces = linux.namespaces().clone().unwrap_or_default();
    for key in sec.sysctls.keys() {
        let ns = sysctl_namespace(key).unwrap_or("host");
        let typ = match ns {
            "ipc" => LinuxNamespaceType::Ipc,
            "uts" => LinuxNamespaceType::Uts,
            _ => LinuxNamespaceType::Network,
        };
        // A namespace entry with a path joins another container's: that is
        // not the host's, so the sysctl stays in containers.
        if !namespaces.iter().any(|n| n.typ() == typ) {
            return Err(SecurityApplyError::SysctlHostNamespace {
                key: key.clone(),
                ns,
            });
        }
    }
    let mut sysctl = linux.sysctl().clone().unwrap_or_default();
    sysctl.extend(sec.sysctls.clone());
    linux.set_sysctl(Some(sysctl));
    Ok(())
}

fn edit_masks(sec: &SecurityOptions, spec: &mut Spec) {
    if sec.mask.is_empty() && sec.unmask.is_empty() && !sec.privileged {
        return;
    }
    let linux = spec.linux_mut().get_or_insert_with(super::edit::bare_linux);
    let all = sec.privileged || sec.unmask.iter().any(|u| u == "ALL");
    let keep = |paths: &Option<Vec<String>>| -> Vec<String> {
        match all {
            true => Vec::new(),
            false => paths
                .iter()
                .flatten()
                .filter(|p| !sec.unmask.contains(p))
                .cloned()
                .collect(),
        }
    };
    let mut masked = keep(linux.masked_paths());
    let readonly = keep(linux.readonly_paths());
    masked.extend(
        sec.mask
            .iter()
            .filter(|m| !masked.contains(m))
            .cloned()
            .collect::<Vec<_>>(),
    );
    linux.set_masked_paths(Some(masked));
    linux.set_readonly_paths(Some(readonly));
    if sec.privileged {
        // podman's privileged: /sys and cgroupfs writable.
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for m in mounts.iter_mut() {
            if matches!(m.typ().as_deref(), Some("sysfs" | "cgroup" | "cgroup2")) {
                let opts: Vec<String> = m
                    .options()
                    .iter()
                    .flatten()
                    .filter(|o| *o != "ro")
                    .cloned()
                    .collect();
                m.set_options(Some(opts));
            }
        }
        spec.set_mounts(Some(mounts));
    }
}

/// The host's device nodes under /dev, as privileged containers get them
/// (podman skips the same pseudo-terminal and shared-memory trees), and
/// the device cgroup opened to all.
fn privileged_devices(spec: &mut Spec) {
    let mut found = Vec::new();
    walk_dev(Path::new("/dev"), &mut found);
    let linux = spec.linux_mut().get_or_insert_with(super::edit::bare_linux);
    let mut devices = linux.devices().clone().unwrap_or_default();
    for (path, meta) in found {
        let typ = match meta.file_type().is_block_device() {
            true => LinuxDeviceType::B,
            false => LinuxDeviceType::C,
        };
        if devices.iter().any(|d| d.path() == &path) {
            continue;
        }
        let rdev = meta.rdev();
        let dev = LinuxDeviceBuilder::default()
            .path(path)
            .typ(typ)
            .major(nix::sys::stat::major(rdev) as i64)
            .minor(nix::sys::stat::minor(rdev) as i64)
            .file_mode(meta.mode() & 0o7777)
            .uid(meta.uid())
            .gid(meta.gid())
            .build();
        if let Ok(dev) = dev {
            devices.push(dev);
        }
    }
    linux.set_devices(Some(devices));
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut allow = LinuxDeviceCgroup::default();
    allow.set_allow(true).set_access(Some("rwm".into()));
    res.set_devices(Some(vec![allow]));
    linux.set_resources(Some(res));
}

/// Device nodes under `dir`, never following a symlink.
fn walk_dev(dir: &Path, out: &mut Vec<(PathBuf, std::fs::Metadata)>) {
    const SKIP: &[&str] = &[
        "/dev/pts",
        "/dev/shm",
        "/dev/mqueue",
        "/dev/console",
        "/dev/ptmx",
    ];
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if SKIP.iter().any(|s| path == Path::new(s)) {
            continue;
        }
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            walk_dev(&path, out);
        } else if ft.is_char_device() || ft.is_block_device() {
            out.push((path, meta));
        }
    }
}

fn edit_seccomp(
    sec: &SecurityOptions,
    image: bool,
    spec: &mut Spec,
) -> Result<(), SecurityApplyError> {
    match &sec.seccomp {
        _ if sec.privileged => clear_seccomp(spec),
        Some(Seccomp::Unconfined) => clear_seccomp(spec),
        Some(Seccomp::Profile(p)) => seccomp_profile::apply_profile(spec, p)?,
        None if image || seccomp_profile::wants_runtime_default(spec) => {
            seccomp_profile::apply_runtime_default(spec)?
        }
        None => {}
    }
    Ok(())
}

fn clear_seccomp(spec: &mut Spec) {
    if let Some(linux) = spec.linux_mut() {
        linux.set_seccomp(None);
    }
}
