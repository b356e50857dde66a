//! The spec's Linux side: mounts (the pod's files, the config's, with
//! propagation), namespaces (the pod's by path), resources and devices.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxHugepageLimit, LinuxMemory,
    LinuxNamespace, LinuxNamespaceType, LinuxResources, Mount, Spec,
};

use super::PodPaths;
use crate::api::{ContainerConfig, LinuxContainerResources, MountPropagation, NamespaceMode};
use crate::error::{CriError, Result};

fn bind(dest: &str, source: &Path, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.into())
        .set_typ(Some("bind".into()))
        .set_source(Some(source.to_owned()))
        .set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

pub(super) fn mounts(
    spec: &mut Spec,
    c: &ContainerConfig,
    pod: &PodPaths,
    privileged: bool,
) -> Result<()> {
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    if privileged {
        // /sys read-write, as containerd gives a privileged container.
        for m in mounts
            .iter_mut()
            .filter(|m| m.destination() == Path::new("/sys"))
        {
            let o: Vec<String> = m
                .options()
                .iter()
                .flatten()
                .filter(|o| *o != "ro")
                .cloned()
                .collect();
            m.set_options(Some(o));
        }
    }
    // The pod's files (and its /dev/shm when the pod shares IPC).
    let mut shared: Vec<(&str, PathBuf)> = vec![
        ("/etc/hostname", pod.dir.join("hostname")),
        ("/etc/hosts", pod.dir.join("hosts")),
        ("/etc/resolv.conf", pod.dir.join("resolv.conf")),
    ];
    if !pod.host_ipc {
        shared.push(("/dev/shm", pod.dir.join("shm")));
    }
    let user_has = |d: &str| c.mounts.iter().any(|m| m.container_path == d);
    // In a pod's own user namespace they are idmapped with it: owned by its
    // root, as the container's root sees them (idmap.rs in berth-init).
    let pod_opts: &[&str] = match pod.userns {
        Some(_) => &["rbind", "rprivate", "rw", "idmap"],
        None => &["rbind", "rprivate", "rw"],
    };
    for (dest, src) in shared {
        if !user_has(dest) {
            mounts.retain(|m| m.destination() != Path::new(dest));
            mounts.push(bind(dest, &src, pod_opts));
        }
    }
    for m in &c.mounts {
        if !m.container_path.starts_with('/') || m.host_path.is_empty() {
            return Err(CriError::InvalidArgument(format!(
                "mount {:?} → {:?}: want an absolute container path and a host path",
                m.host_path, m.container_path
            )));
        }
        if m.image.is_some() {
            return Err(CriError::Unimplemented(
                "image volumes are not supported by berth-cri".into(),
            ));
        }
        let host = Path::new(&m.host_path);
        // containerd: a missing host path is made as a directory.
        if !host.exists() {
            std::fs::create_dir_all(host).map_err(|e| {
                CriError::InvalidArgument(format!("mount source {}: {e}", host.display()))
            })?;
        }
        let prop = match m.propagation {
            1 => "rslave",
            2 => "rshared",
            _ => "rprivate",
        };
        let mut opts = vec!["rbind", prop];
        opts.push(if m.readonly { "ro" } else { "rw" });
        if m.recursive_read_only {
            // The kubelet's rules (and containerd's): recursive read-only
            // is read-only, and a propagation into it would bring mounts
            // in that are not.
            if !m.readonly {
                return Err(CriError::InvalidArgument(format!(
                    "mount {:?}: recursive_read_only needs readonly",
                    m.container_path
                )));
            }
            if m.propagation != MountPropagation::PropagationPrivate as i32 {
                return Err(CriError::InvalidArgument(format!(
                    "mount {:?}: recursive_read_only needs private propagation",
                    m.container_path
                )));
            }
            opts.push("rro");
        }
        mounts.retain(|x| x.destination() != Path::new(&m.container_path));
        mounts.push(bind(&m.container_path, host, &opts));
    }
    spec.set_mounts(Some(mounts));
    // As containerd: a bidirectional mount needs the container's root
    // shared (else the bind, made from a slave copy of the host's mount,
    // is a slave and the container's mounts never reach the host); a
    // host-to-container one needs it slave at least. berth-init keeps the
    // rootfs's parent private, as runc does, so nothing else leaks out.
    let want = |p: i32| c.mounts.iter().any(|m| m.propagation == p);
    let root = match (want(2), want(1)) {
        (true, _) => Some("rshared"),
        (false, true) => Some("rslave"),
        _ => None,
    };
    if let (Some(root), Some(linux)) = (root, spec.linux_mut()) {
        linux.set_rootfs_propagation(Some(root.into()));
    }
    Ok(())
}

pub(super) fn namespaces(
    spec: &mut Spec,
    pod: &PodPaths,
    sc: &crate::api::LinuxContainerSecurityContext,
    target_pid: Option<u32>,
) -> Result<()> {
    let opts = sc.namespace_options.clone().unwrap_or_default();
    let ns = |typ, path: Option<PathBuf>| {
        let mut n = LinuxNamespace::default();
        n.set_typ(typ).set_path(path);
        n
    };
    let mut list = vec![
        ns(LinuxNamespaceType::Mount, None),
        ns(LinuxNamespaceType::Cgroup, None),
    ];
    if !pod.host_network {
        list.push(ns(LinuxNamespaceType::Network, Some(pod.dir.join("net"))));
        list.push(ns(LinuxNamespaceType::Uts, Some(pod.dir.join("uts"))));
    }
    if !pod.host_ipc {
        list.push(ns(LinuxNamespaceType::Ipc, Some(pod.dir.join("ipc"))));
    }
    if pod.userns.is_some() {
        list.push(ns(LinuxNamespaceType::User, Some(pod.dir.join("user"))));
    }
    let pid_mode = NamespaceMode::try_from(opts.pid).unwrap_or(NamespaceMode::Container);
    match pid_mode {
        NamespaceMode::Node => {}
        _ if pod.host_pid => {}
        NamespaceMode::Target => {
            let pid = target_pid.ok_or_else(|| {
                CriError::NotFound(format!(
                    "target container {:?} of the pid namespace is not running",
                    opts.target_id
                ))
            })?;
            list.push(ns(
                LinuxNamespaceType::Pid,
                Some(format!("/proc/{pid}/ns/pid").into()),
            ));
        }
        // POD: a pid namespace needs a process to exist, and a berth pod
        // has none; each container gets its own (see docs/cri.md).
        _ => list.push(ns(LinuxNamespaceType::Pid, None)),
    }
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    linux.set_namespaces(Some(list));
    Ok(())
}

pub(super) fn resources(r: Option<&LinuxContainerResources>) -> LinuxResources {
    let mut res = LinuxResources::default();
    let Some(r) = r else { return res };
    let mut cpu = LinuxCpu::default();
    let mut any_cpu = false;
    if r.cpu_shares > 0 {
        cpu.set_shares(Some(r.cpu_shares as u64));
        any_cpu = true;
    }
    if r.cpu_quota > 0 {
        cpu.set_quota(Some(r.cpu_quota));
        any_cpu = true;
    }
    if r.cpu_period > 0 {
        cpu.set_period(Some(r.cpu_period as u64));
        any_cpu = true;
    }
    if !r.cpuset_cpus.is_empty() {
        cpu.set_cpus(Some(r.cpuset_cpus.clone()));
        any_cpu = true;
    }
    if !r.cpuset_mems.is_empty() {
        cpu.set_mems(Some(r.cpuset_mems.clone()));
        any_cpu = true;
    }
    if any_cpu {
        res.set_cpu(Some(cpu));
    }
    if r.memory_limit_in_bytes > 0 {
        let mut m = LinuxMemory::default();
        m.set_limit(Some(r.memory_limit_in_bytes));
        if r.memory_swap_limit_in_bytes > 0 {
            m.set_swap(Some(r.memory_swap_limit_in_bytes));
        }
        res.set_memory(Some(m));
    }
    if !r.hugepage_limits.is_empty() {
        let h = r
            .hugepage_limits
            .iter()
            .map(|h| {
                let mut l = LinuxHugepageLimit::default();
                l.set_page_size(h.page_size.clone())
                    .set_limit(h.limit as i64);
                l
            })
            .collect();
        res.set_hugepage_limits(Some(h));
    }
    if !r.unified.is_empty() {
        res.set_unified(Some(r.unified.clone()));
    }
    res
}

pub(super) fn devices(
    spec: &mut Spec,
    c: &ContainerConfig,
    res: &mut LinuxResources,
    privileged: bool,
) -> Result<()> {
    let mut allow = res.devices().clone().unwrap_or_default();
    let mut devs = Vec::new();
    for d in &c.devices {
        let host = Path::new(&d.host_path);
        let meta = std::fs::metadata(host)
            .map_err(|e| CriError::InvalidArgument(format!("device {}: {e}", host.display())))?;
        use std::os::unix::fs::{FileTypeExt, MetadataExt};
        let typ = match meta.file_type() {
            t if t.is_char_device() => LinuxDeviceType::C,
            t if t.is_block_device() => LinuxDeviceType::B,
            _ => {
                return Err(CriError::InvalidArgument(format!(
                    "device {} is not a device node",
                    host.display()
                )))
            }
        };
        let rdev = meta.rdev();
        let (major, minor) = (nix::sys::stat::major(rdev), nix::sys::stat::minor(rdev));
        let mut dev = LinuxDevice::default();
        dev.set_path(PathBuf::from(&d.container_path))
            .set_typ(typ)
            .set_major(major as i64)
            .set_minor(minor as i64)
            .set_file_mode(Some(meta.mode() & 0o777))
            .set_uid(Some(0))
            .set_gid(Some(0));
        devs.push(dev);
        let mut rule = LinuxDeviceCgroup::default();
        let perms = if d.permissions.is_empty() {
            "rwm"
        } else {
            d.permissions.as_str()
        };
        rule.set_allow(true)
            .set_typ(Some(typ))
            .set_major(Some(major as i64))
            .set_minor(Some(minor as i64))
            .set_access(Some(perms.into()));
        allow.push(rule);
    }
    if privileged {
        let mut all = LinuxDeviceCgroup::default();
        all.set_allow(true).set_access(Some("rwm".into()));
        allow.push(all);
    }
    if !allow.is_empty() {
        res.set_devices(Some(allow));
    }
    if !devs.is_empty() {
        let linux = spec.linux_mut().get_or_insert_with(Default::default);
        linux.set_devices(Some(devs));
    }
    Ok(())
}
