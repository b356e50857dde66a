//! CRI ContainerConfig → OCI runtime spec, as containerd's CRI plugin
//! builds it with its SpecOpts: berth-cri decides everything the kubelet
//! asked for; berthd only points the root at the image's rootfs (and, for a
//! user name, resolves it in the image), then validates and runs it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Capability, LinuxCapabilities, LinuxCpu, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType,
    LinuxHugepageLimit, LinuxMemory, LinuxNamespace, LinuxNamespaceType, LinuxResources,
    LinuxSeccomp, Mount, Spec,
};

use crate::api::{ContainerConfig, LinuxContainerResources, NamespaceMode, PodSandboxConfig};
use crate::error::{CriError, Result};

/// The annotation berthd's seccomp support reads: its built-in default
/// profile (RuntimeDefault).
pub const SECCOMP_ANNOTATION: &str = "io.berth.seccomp";

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

/// The image's config (OCI image config's `config`), as berthd's
/// InspectImage shows it.
#[derive(Debug, Default, Clone)]
pub struct ImageConfig {
    pub id: String,
    pub name: String,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub workdir: String,
    pub user: String,
}

impl ImageConfig {
    pub fn from_inspect(json: &str) -> ImageConfig {
        let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
        let cfg = match &v["Config"] {
            serde_json::Value::String(s) => serde_json::from_str(s).unwrap_or_default(),
            other => other.clone(),
        };
        let c = &cfg["config"];
        let list = |k: &str| -> Vec<String> {
            c[k].as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|x| x.as_str().map(String::from))
                        .collect()
                })
                .unwrap_or_default()
        };
        ImageConfig {
            id: v["Id"].as_str().unwrap_or_default().into(),
            name: v["Name"].as_str().unwrap_or_default().into(),
            entrypoint: list("Entrypoint"),
            cmd: list("Cmd"),
            env: list("Env"),
            workdir: c["WorkingDir"].as_str().unwrap_or_default().into(),
            user: c["User"].as_str().unwrap_or_default().into(),
        }
    }
}

/// Where the pod's shared pieces are (sandbox.rs).
pub struct PodPaths {
    pub dir: PathBuf,
    pub host_network: bool,
    pub host_ipc: bool,
    pub host_pid: bool,
}

/// The spec, and the `user` option for berthd (a name or uid[:gid] to
/// resolve in the image; None: the spec's own 0:0).
pub fn build(
    c: &ContainerConfig,
    pod: &PodSandboxConfig,
    pod_paths: &PodPaths,
    image: &ImageConfig,
    target_pid: Option<u32>,
) -> Result<(Spec, Option<String>)> {
    let mut spec = Spec::default();
    spec.set_hostname(None);
    let sc = c.linux.as_ref().and_then(|l| l.security_context.clone());
    let sc = sc.unwrap_or_default();

    // Args: the kubelet's command replaces the entrypoint, args the cmd.
    let args: Vec<String> = match (c.command.is_empty(), c.args.is_empty()) {
        (false, _) => c.command.iter().chain(&c.args).cloned().collect(),
        (true, false) => image.entrypoint.iter().chain(&c.args).cloned().collect(),
        (true, true) => image.entrypoint.iter().chain(&image.cmd).cloned().collect(),
    };
    if args.is_empty() {
        return Err(CriError::InvalidArgument(
            "no command: neither the config nor the image names one".into(),
        ));
    }
    let mut env = image.env.clone();
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(
            0,
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin".into(),
        );
    }
    for kv in &c.envs {
        if kv.key.is_empty() || kv.key.contains('=') {
            return Err(CriError::InvalidArgument(format!(
                "env {:?}: not a variable name",
                kv.key
            )));
        }
        env.retain(|e| e.split('=').next() != Some(kv.key.as_str()));
        env.push(format!("{}={}", kv.key, kv.value));
    }
    if !pod.hostname.is_empty() && !env.iter().any(|e| e.starts_with("HOSTNAME=")) {
        env.push(format!("HOSTNAME={}", pod.hostname));
    }
    let cwd = match (&c.working_dir, &image.workdir) {
        (w, _) if !w.is_empty() => w.clone(),
        (_, w) if !w.is_empty() => w.clone(),
        _ => "/".into(),
    };
    if !cwd.starts_with('/') {
        return Err(CriError::InvalidArgument(format!(
            "working_dir {cwd:?} must be absolute"
        )));
    }

    if sc.run_as_group.is_some() && sc.run_as_user.is_none() && sc.run_as_username.is_empty() {
        return Err(CriError::InvalidArgument(
            "run_as_group needs run_as_user or run_as_username".into(),
        ));
    }
    let user = if !sc.run_as_username.is_empty() {
        Some(sc.run_as_username.clone())
    } else if let Some(u) = &sc.run_as_user {
        Some(match &sc.run_as_group {
            Some(g) => format!("{}:{}", u.value, g.value),
            None => u.value.to_string(),
        })
    } else if !image.user.is_empty() {
        Some(image.user.clone())
    } else {
        None
    };

    let process = spec.process_mut().get_or_insert_with(Default::default);
    process
        .set_args(Some(args))
        .set_env(Some(env))
        .set_cwd(cwd.into())
        .set_terminal(Some(c.tty))
        .set_rlimits(None)
        .set_no_new_privileges(Some(sc.no_new_privs));
    let mut u = process.user().clone();
    let gids: Vec<u32> = sc.supplemental_groups.iter().map(|g| *g as u32).collect();
    u.set_additional_gids(Some(gids).filter(|g| !g.is_empty()));
    process.set_user(u);
    if let Some(r) = c.linux.as_ref().and_then(|l| l.resources.as_ref()) {
        if r.oom_score_adj != 0 {
            process.set_oom_score_adj(Some(r.oom_score_adj as i32));
        }
    }
    let caps = capabilities(&sc)?;
    process.set_capabilities(Some(caps));

    // Root: berthd sets the path; readonly is ours.
    let mut root = spec.root().clone().unwrap_or_default();
    root.set_readonly(Some(sc.readonly_rootfs));
    spec.set_root(Some(root));

    mounts(&mut spec, c, pod_paths, sc.privileged)?;
    namespaces(&mut spec, pod_paths, &sc, target_pid)?;

    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    if sc.privileged {
        linux.set_masked_paths(None).set_readonly_paths(None);
    } else {
        if !sc.masked_paths.is_empty() {
            linux.set_masked_paths(Some(sc.masked_paths.clone()));
        }
        if !sc.readonly_paths.is_empty() {
            linux.set_readonly_paths(Some(sc.readonly_paths.clone()));
        }
    }
    if let Some(p) = pod.linux.as_ref() {
        if !p.sysctls.is_empty() {
            linux.set_sysctl(Some(p.sysctls.clone()));
        }
    }
    let mut res = resources(c.linux.as_ref().and_then(|l| l.resources.as_ref()));
    devices(&mut spec, c, &mut res, sc.privileged)?;
    let linux = spec.linux_mut().get_or_insert_with(Default::default);
    linux.set_resources(Some(res));

    let mut ann: HashMap<String, String> = c.annotations.clone();
    seccomp(&mut spec, &sc, &mut ann)?;
    spec.set_annotations(Some(ann));
    Ok((spec, user))
}

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

fn capabilities(sc: &crate::api::LinuxContainerSecurityContext) -> Result<LinuxCapabilities> {
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

fn bind(dest: &str, source: &Path, opts: &[&str]) -> Mount {
    let mut m = Mount::default();
    m.set_destination(dest.into())
        .set_typ(Some("bind".into()))
        .set_source(Some(source.to_owned()))
        .set_options(Some(opts.iter().map(|s| s.to_string()).collect()));
    m
}

fn mounts(spec: &mut Spec, c: &ContainerConfig, pod: &PodPaths, privileged: bool) -> Result<()> {
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
    for (dest, src) in shared {
        if !user_has(dest) {
            mounts.retain(|m| m.destination() != Path::new(dest));
            mounts.push(bind(dest, &src, &["rbind", "rprivate", "rw"]));
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
            if !m.readonly {
                return Err(CriError::InvalidArgument(
                    "recursive_read_only needs readonly".into(),
                ));
            }
            opts.push("rro");
        }
        mounts.retain(|x| x.destination() != Path::new(&m.container_path));
        mounts.push(bind(&m.container_path, host, &opts));
    }
    spec.set_mounts(Some(mounts));
    Ok(())
}

fn namespaces(
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

fn resources(r: Option<&LinuxContainerResources>) -> LinuxResources {
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

fn devices(
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

fn seccomp(
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
