//! RunPodSandbox, StopPodSandbox, RemovePodSandbox, PodSandboxStatus,
//! ListPodSandbox: CRI-only objects kept in berth-cri's store, made of
//! pinned namespaces and a CNI attachment (sandbox.rs).

use std::sync::Arc;

use prost::Message;

use crate::api::*;
use crate::error::{CriError, Result};
use crate::sandbox::PodNet;
use crate::state::Cri;
use crate::store::{now_ns, PodRecord, PodState};

fn proto_of(p: i32) -> &'static str {
    match Protocol::try_from(p) {
        Ok(Protocol::Udp) => "udp",
        Ok(Protocol::Sctp) => "sctp",
        _ => "tcp",
    }
}

/// The pod's namespace choices (NODE = the host's).
pub fn host_namespaces(cfg: &PodSandboxConfig) -> (bool, bool, bool) {
    let o = cfg
        .linux
        .as_ref()
        .and_then(|l| l.security_context.as_ref())
        .and_then(|s| s.namespace_options.clone())
        .unwrap_or_default();
    let node = NamespaceMode::Node as i32;
    (o.network == node, o.ipc == node, o.pid == node)
}

pub async fn run(cri: &Arc<Cri>, req: RunPodSandboxRequest) -> Result<String> {
    let cfg = req
        .config
        .ok_or_else(|| CriError::InvalidArgument("config is required".into()))?;
    let md = cfg.metadata.clone().unwrap_or_default();
    if md.name.is_empty() || md.namespace.is_empty() || md.uid.is_empty() {
        return Err(CriError::InvalidArgument(
            "metadata.name, namespace and uid are required".into(),
        ));
    }
    let (host_network, host_ipc, host_pid) = host_namespaces(&cfg);
    let userns = crate::spec::userns::of_pod(&cfg)?.map(|u| (u.uid, u.gid));
    // The systemd driver's cgroup_parent is a slice name; a path of slices
    // (/kubepods.slice/…/x.slice) names its last one, whose parents systemd
    // implies from the name.
    let slice = cfg
        .linux
        .as_ref()
        .map(|l| l.cgroup_parent.clone())
        .unwrap_or_default();
    let slice = slice.rsplit('/').next().unwrap_or_default().to_string();
    if !slice.is_empty() && !slice.ends_with(".slice") {
        return Err(CriError::InvalidArgument(format!(
            "cgroup_parent {slice:?}: berth-cri uses the systemd cgroup driver, \
             want a slice such as kubepods-besteffort-pod<uid>.slice"
        )));
    }
    // No hostname asked: the node's, as containerd does.
    let hostname = match cfg.hostname.as_str() {
        "" => nix::unistd::gethostname()
            .map(|h| h.to_string_lossy().into_owned())
            .unwrap_or_else(|_| "localhost".into()),
        h => h.to_string(),
    };
    if hostname.len() > 64 {
        return Err(CriError::InvalidArgument(format!(
            "hostname {hostname:?} is longer than 64 bytes"
        )));
    }
    let id = crate::store::new_id();
    let rec = PodRecord {
        id: id.clone(),
        name: md.name.clone(),
        uid: md.uid.clone(),
        namespace: md.namespace.clone(),
        attempt: md.attempt,
        state: PodState::Creating,
        created_at_ns: now_ns(),
        labels: cfg.labels.clone().into_iter().collect(),
        annotations: cfg.annotations.clone().into_iter().collect(),
        hostname: hostname.clone(),
        log_directory: cfg.log_directory.clone(),
        slice,
        host_network,
        host_ipc,
        host_pid,
        ips: Vec::new(),
        network: String::new(),
        runtime_handler: req.runtime_handler.clone(),
        config: cfg.encode_to_vec(),
    };
    let store = cri.store.clone();
    let r = rec.clone();
    if let Some(other) = Cri::blocking(move || Ok(store.insert_pod(&r)?)).await? {
        return Err(CriError::AlreadyExists(format!(
            "pod {}/{} (uid {}, attempt {}) exists: sandbox {other}",
            md.namespace, md.name, md.uid, md.attempt
        )));
    }
    let lock = cri.pod_lock(&id);
    let _held = lock.lock().await;
    let sb = cri.sandboxes.clone();
    let dns = cfg.dns_config.clone().unwrap_or_default();
    let ports: Vec<(i32, i32, &'static str, String)> = cfg
        .port_mappings
        .iter()
        .filter(|p| p.host_port > 0)
        .map(|p| {
            (
                p.host_port,
                p.container_port,
                proto_of(p.protocol),
                p.host_ip.clone(),
            )
        })
        .collect();
    let made = {
        let (id, hostname) = (id.clone(), hostname.clone());
        Cri::blocking(move || {
            let net = PodNet {
                id: &id,
                hostname: &hostname,
                host_network,
                host_ipc,
                ports,
                dns: Some((&dns.servers, &dns.searches, &dns.options)),
                userns,
            };
            Ok(sb.setup(&net)?)
        })
        .await
    };
    let (network, ips) = match made {
        Ok(x) => x,
        Err(e) => {
            // Undo every part made, then the record: nothing stays.
            let (sb, store, id2) = (cri.sandboxes.clone(), cri.store.clone(), id.clone());
            let _ = Cri::blocking(move || {
                sb.remove(&id2)?;
                Ok(store.delete_pod(&id2)?)
            })
            .await;
            return Err(e);
        }
    };
    let mut rec = rec;
    rec.state = PodState::Ready;
    rec.ips = ips;
    rec.network = network;
    let store = cri.store.clone();
    Cri::blocking(move || Ok(store.put_pod(&rec)?)).await?;
    Ok(id)
}

pub async fn get(cri: &Cri, id: &str) -> Result<PodRecord> {
    if id.is_empty() {
        return Err(CriError::InvalidArgument(
            "pod_sandbox_id is required".into(),
        ));
    }
    cri.store
        .pod(id)?
        .ok_or_else(|| CriError::NotFound(format!("pod sandbox {id} not found")))
}

/// Stops every container of the pod (KILL: the kubelet stopped them
/// gracefully already if it meant to), then releases the network.
pub async fn stop(cri: &Arc<Cri>, id: &str) -> Result<()> {
    let Some(mut rec) = cri.store.pod(id)? else {
        return Ok(());
    };
    let lock = cri.pod_lock(id);
    let _held = lock.lock().await;
    for c in cri
        .store
        .containers()?
        .into_iter()
        .filter(|c| c.pod_id == id)
    {
        crate::containers::stop(cri, &c.id, 0).await?;
    }
    let (sb, pid) = (cri.sandboxes.clone(), id.to_string());
    Cri::blocking(move || Ok(sb.teardown(&pid)?)).await?;
    if rec.state != PodState::NotReady {
        rec.state = PodState::NotReady;
        let store = cri.store.clone();
        Cri::blocking(move || Ok(store.put_pod(&rec)?)).await?;
    }
    Ok(())
}

pub async fn remove(cri: &Arc<Cri>, id: &str) -> Result<()> {
    if cri.store.pod(id)?.is_none() {
        return Ok(());
    }
    stop(cri, id).await?;
    let lock = cri.pod_lock(id);
    let _held = lock.lock().await;
    for c in cri
        .store
        .containers()?
        .into_iter()
        .filter(|c| c.pod_id == id)
    {
        crate::containers::remove(cri, &c.id).await?;
    }
    let (sb, store, pid) = (cri.sandboxes.clone(), cri.store.clone(), id.to_string());
    Cri::blocking(move || {
        sb.remove(&pid)?;
        Ok(store.delete_pod(&pid)?)
    })
    .await?;
    cri.pod_locks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(id);
    Ok(())
}

fn state_of(p: &PodRecord) -> i32 {
    match p.state {
        PodState::Ready => PodSandboxState::SandboxReady as i32,
        _ => PodSandboxState::SandboxNotready as i32,
    }
}

fn metadata(p: &PodRecord) -> PodSandboxMetadata {
    PodSandboxMetadata {
        name: p.name.clone(),
        uid: p.uid.clone(),
        namespace: p.namespace.clone(),
        attempt: p.attempt,
    }
}

pub fn status(p: &PodRecord) -> PodSandboxStatus {
    let mode = |host: bool| match host {
        true => NamespaceMode::Node as i32,
        false => NamespaceMode::Pod as i32,
    };
    PodSandboxStatus {
        id: p.id.clone(),
        metadata: Some(metadata(p)),
        state: state_of(p),
        created_at: p.created_at_ns,
        network: Some(PodSandboxNetworkStatus {
            ip: p.ips.first().cloned().unwrap_or_default(),
            additional_ips: p
                .ips
                .iter()
                .skip(1)
                .map(|ip| PodIp { ip: ip.clone() })
                .collect(),
        }),
        linux: Some(LinuxPodSandboxStatus {
            namespaces: Some(Namespace {
                options: Some(NamespaceOption {
                    network: mode(p.host_network),
                    ipc: mode(p.host_ipc),
                    pid: match p.host_pid {
                        true => NamespaceMode::Node as i32,
                        false => NamespaceMode::Container as i32,
                    },
                    ..Default::default()
                }),
            }),
        }),
        labels: p.labels.clone().into_iter().collect(),
        annotations: p.annotations.clone().into_iter().collect(),
        runtime_handler: p.runtime_handler.clone(),
    }
}

pub fn list(cri: &Cri, filter: Option<PodSandboxFilter>) -> Result<Vec<PodSandbox>> {
    let f = filter.unwrap_or_default();
    Ok(cri
        .store
        .pods()?
        .into_iter()
        .filter(|p| p.state != PodState::Creating)
        .filter(|p| f.id.is_empty() || p.id.starts_with(&f.id))
        .filter(|p| f.state.as_ref().is_none_or(|s| s.state == state_of(p)))
        .filter(|p| {
            f.label_selector
                .iter()
                .all(|(k, v)| p.labels.get(k) == Some(v))
        })
        .map(|p| PodSandbox {
            id: p.id.clone(),
            metadata: Some(metadata(&p)),
            state: state_of(&p),
            created_at: p.created_at_ns,
            labels: p.labels.clone().into_iter().collect(),
            annotations: p.annotations.clone().into_iter().collect(),
            runtime_handler: p.runtime_handler.clone(),
        })
        .collect())
}
