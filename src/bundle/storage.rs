//! A create's planned mounts (volumes::SpecMounts) applied to the spec: the
//! caller's mounts replace the spec's on the same destination, `read_only`
//! makes the root read-only, `shm_size` sizes /dev/shm.

use std::path::Path;

use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount, Spec};

use crate::volumes::SpecMounts;

/// /dev/shm as podman mounts it when the spec has none.
const SHM_OPTIONS: &[&str] = &["nosuid", "noexec", "nodev", "mode=1777"];

pub fn edit_storage(s: &SpecMounts, spec: &mut Spec) {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    for m in &s.mounts {
        mounts.retain(|old| old.destination() != Path::new(&m.dest));
    }
    for m in &s.mounts {
        let mut mount = Mount::default();
        mount
            .set_destination(m.dest.clone().into())
            .set_typ(Some(m.typ.into()))
            .set_source(Some(m.source.clone()))
            .set_options(Some(m.options.clone()));
        mounts.push(mount);
    }
    if let Some(size) = s.shm_size {
        let size = format!("size={size}");
        match mounts
            .iter_mut()
            .find(|m| m.destination() == Path::new("/dev/shm"))
        {
            Some(shm) => {
                let mut opts = shm.options().clone().unwrap_or_default();
                opts.retain(|o| !o.starts_with("size="));
                opts.push(size);
                shm.set_options(Some(opts));
            }
            None => {
                let mut shm = Mount::default();
                let mut opts: Vec<String> = SHM_OPTIONS.iter().map(|o| o.to_string()).collect();
                opts.push(size);
                shm.set_destination("/dev/shm".into())
                    .set_typ(Some("tmpfs".into()))
                    .set_source(Some("shm".into()))
                    .set_options(Some(opts));
                mounts.push(shm);
            }
        }
    }
    spec.set_mounts(Some(mounts));
    if !s.devices.is_empty() {
        edit_devices(s, spec);
    }
    if s.read_only {
        if let Some(root) = spec.root_mut() {
            root.set_readonly(Some(true));
        }
    }
}

/// `--device`: the node made in the container's /dev (linux.devices) and
/// allowed by the device cgroup (linux.resources.devices) with the access
/// asked for.
fn edit_devices(s: &SpecMounts, spec: &mut Spec) {
    let linux = spec.linux_mut().get_or_insert_with(super::edit::bare_linux);
    let mut devices = linux.devices().clone().unwrap_or_default();
    let mut res = linux.resources().clone().unwrap_or_default();
    let mut rules = res.devices().clone().unwrap_or_default();
    for d in &s.devices {
        let typ = match d.typ {
            'b' => LinuxDeviceType::B,
            _ => LinuxDeviceType::C,
        };
        devices.retain(|old| old.path() != Path::new(&d.path));
        let mut dev = LinuxDevice::default();
        dev.set_path(d.path.clone().into())
            .set_typ(typ)
            .set_major(d.major)
            .set_minor(d.minor)
            .set_file_mode(Some(d.mode))
            .set_uid(Some(d.uid))
            .set_gid(Some(d.gid));
        devices.push(dev);
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true)
            .set_typ(Some(typ))
            .set_major(Some(d.major))
            .set_minor(Some(d.minor))
            .set_access(Some(d.access.clone()));
        rules.push(rule);
    }
    linux.set_devices(Some(devices));
    res.set_devices(Some(rules));
    linux.set_resources(Some(res));
}
