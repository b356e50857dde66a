//! CRI ContainerConfig → OCI runtime spec, as containerd's CRI plugin
//! builds it with its SpecOpts: berth-cri decides everything the kubelet
//! asked for; berthd only points the root at the image's rootfs (and, for a
//! user name, resolves it in the image), then validates and runs it.

use std::collections::HashMap;
use std::path::PathBuf;

use oci_spec::runtime::Spec;

use crate::api::{ContainerConfig, PodSandboxConfig};

mod linux;
mod security;
pub mod userns;

use crate::error::{CriError, Result};
use linux::{devices, mounts, namespaces, resources};
use security::{capabilities, seccomp};

/// The annotation berthd's seccomp support reads: its built-in default
/// profile (RuntimeDefault).
pub const SECCOMP_ANNOTATION: &str = "io.berth.seccomp";

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
    /// The pod's own user namespace (at `dir`/user), if it has one.
    pub userns: Option<userns::PodUserns>,
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
    if let Some(u) = &pod_paths.userns {
        userns::set_mappings(&mut spec, u)?;
    }

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
