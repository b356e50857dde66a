//! The container verbs: each CRI container is a berthd container (the same
//! one berthctl and busctl see), made from the image with the spec built in
//! spec.rs, in the pod's slice, writing the CRI log file.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use prost::Message;
use zbus::zvariant::Value;

use crate::api::*;
use crate::error::{is_not_found, CriError, Result};
use crate::spec::{ImageConfig, PodPaths};
use crate::state::{Cri, POD_LABEL};
use crate::store::{now_ns, ContainerRecord, PodState};

pub async fn create(cri: &Arc<Cri>, req: CreateContainerRequest) -> Result<String> {
    let pod = crate::pods::get(cri, &req.pod_sandbox_id).await?;
    if pod.state != PodState::Ready {
        return Err(CriError::FailedPrecondition(format!(
            "pod sandbox {} is not ready",
            pod.id
        )));
    }
    let cfg = req
        .config
        .ok_or_else(|| CriError::InvalidArgument("config is required".into()))?;
    let md = cfg.metadata.clone().unwrap_or_default();
    if md.name.is_empty() {
        return Err(CriError::InvalidArgument(
            "metadata.name is required".into(),
        ));
    }
    let image_name = cfg
        .image
        .as_ref()
        .map(|i| i.image.clone())
        .unwrap_or_default();
    if image_name.is_empty() {
        return Err(CriError::InvalidArgument("image.image is required".into()));
    }
    let inspect = cri.images().await?.inspect_image(&image_name).await?;
    let image = ImageConfig::from_inspect(&inspect);
    let pod_cfg = PodSandboxConfig::decode(pod.config.as_slice()).unwrap_or_default();
    let sc = cfg.linux.as_ref().and_then(|l| l.security_context.as_ref());
    let target = sc
        .and_then(|s| s.namespace_options.as_ref())
        .filter(|o| o.pid == NamespaceMode::Target as i32)
        .map(|o| o.target_id.clone());
    let target_pid = match target {
        Some(t) => Some(cri.container(&t).await?.pid().await?).filter(|p| *p != 0),
        None => None,
    };
    let paths = PodPaths {
        dir: cri.sandboxes.dir(&pod.id),
        host_network: pod.host_network,
        host_ipc: pod.host_ipc,
        host_pid: pod.host_pid,
        userns: crate::spec::userns::of_pod(&pod_cfg)?,
    };
    let (spec, user) = crate::spec::build(&cfg, &pod_cfg, &paths, &image, target_pid)?;
    let log_path = match (pod.log_directory.as_str(), cfg.log_path.as_str()) {
        ("", _) | (_, "") => String::new(),
        (d, p) => std::path::Path::new(d)
            .join(p)
            .to_string_lossy()
            .into_owned(),
    };
    let id = crate::store::new_id();
    let rec = ContainerRecord {
        id: id.clone(),
        pod_id: pod.id.clone(),
        name: md.name.clone(),
        attempt: md.attempt,
        made: false,
        created_at_ns: now_ns(),
        labels: cfg.labels.clone().into_iter().collect(),
        annotations: cfg.annotations.clone().into_iter().collect(),
        image: image_name.clone(),
        image_ref: image.id.clone(),
        log_path: log_path.clone(),
        stop_signal: cfg.stop_signal,
        config: cfg.encode_to_vec(),
    };
    let store = cri.store.clone();
    let r = rec.clone();
    if let Some(other) = Cri::blocking(move || Ok(store.insert_container(&r)?)).await? {
        return Err(CriError::AlreadyExists(format!(
            "container {} (attempt {}) exists in pod {}: {other}",
            md.name, md.attempt, pod.id
        )));
    }
    let made = make(
        cri,
        &id,
        &pod,
        &image_name,
        &spec,
        user,
        &log_path,
        cfg.stdin,
    )
    .await;
    let store = cri.store.clone();
    match made {
        Ok(()) => {
            let mut rec = rec;
            rec.made = true;
            Cri::blocking(move || Ok(store.put_container(&rec)?)).await?;
            crate::events::send(cri, &id, ContainerEventType::ContainerCreatedEvent).await;
            Ok(id)
        }
        Err(e) => {
            let id2 = id.clone();
            let _ = Cri::blocking(move || Ok(store.delete_container(&id2)?)).await;
            Err(e)
        }
    }
}

// Each argument is one CreateContainer option's source; a struct for them
// would only move the list.
#[allow(clippy::too_many_arguments)]
async fn make(
    cri: &Cri,
    id: &str,
    pod: &crate::store::PodRecord,
    image: &str,
    spec: &oci_spec::runtime::Spec,
    user: Option<String>,
    log_path: &str,
    stdin: bool,
) -> Result<()> {
    let json = serde_json::to_string(spec).map_err(|e| CriError::Internal(e.to_string()))?;
    let mut labels = HashMap::new();
    labels.insert(POD_LABEL.to_string(), pod.id.clone());
    let mut o: HashMap<&str, Value> = HashMap::new();
    o.insert("image", Value::from(image));
    o.insert("spec", Value::from(json));
    o.insert("labels", Value::from(labels));
    if let Some(u) = user {
        o.insert("user", Value::from(u));
    }
    if stdin {
        // ContainerConfig.stdin: a stdin fed by attach clients (Attach).
        o.insert("stdin", Value::from(true));
    }
    if !pod.slice.is_empty() {
        o.insert("slice", Value::from(pod.slice.clone()));
    }
    if !log_path.is_empty() {
        if let Some(dir) = std::path::Path::new(log_path).parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        o.insert("log_path", Value::from(log_path));
    }
    cri.manager().await?.create_container(id, "", o).await?;
    Ok(())
}

pub fn get(cri: &Cri, id: &str) -> Result<ContainerRecord> {
    if id.is_empty() {
        return Err(CriError::InvalidArgument("container_id is required".into()));
    }
    cri.store
        .container(id)?
        .filter(|c| c.made)
        .ok_or_else(|| CriError::NotFound(format!("container {id} not found")))
}

pub async fn start(cri: &Arc<Cri>, id: &str) -> Result<()> {
    get(cri, id)?;
    cri.manager().await?.start_container(id).await?;
    crate::events::send(cri, id, ContainerEventType::ContainerStartedEvent).await;
    Ok(())
}

/// The stop signal, then KILL after `timeout` seconds; returns once it has
/// exited. Stopping a stopped (or never started) container is fine.
pub async fn stop(cri: &Arc<Cri>, id: &str, timeout: i64) -> Result<()> {
    // Idempotent, as the CRI asks: a container already gone is stopped.
    let rec = match get(cri, id) {
        Err(CriError::NotFound(_)) => return Ok(()),
        other => other?,
    };
    let c = match cri.container(id).await {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => return Ok(()),
        Err(e) => return Err(e),
    };
    let status = c.status().await?;
    if status != "running" && status != "paused" {
        return Ok(());
    }
    let m = cri.manager().await?;
    let sig = signal_number(rec.stop_signal);
    if timeout > 0 {
        let _ = m.kill_container(id, "init", sig).await;
        let wait = m.wait_container(id);
        if tokio::time::timeout(Duration::from_secs(timeout as u64), wait)
            .await
            .is_ok()
        {
            crate::events::send(cri, id, ContainerEventType::ContainerStoppedEvent).await;
            return Ok(());
        }
    }
    match m.kill_container(id, "all", libc::SIGKILL).await {
        Ok(()) => {}
        // It ended in the meantime.
        Err(zbus::Error::MethodError(n, _, _)) if n.as_str().ends_with("FailedPrecondition") => {}
        Err(e) => return Err(e.into()),
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), m.wait_container(id)).await;
    crate::events::send(cri, id, ContainerEventType::ContainerStoppedEvent).await;
    Ok(())
}

fn signal_number(s: i32) -> i32 {
    use crate::api::Signal as S;
    match S::try_from(s).unwrap_or(S::RuntimeDefault) {
        S::Sigkill => libc::SIGKILL,
        S::Sigint => libc::SIGINT,
        S::Sigquit => libc::SIGQUIT,
        S::Sighup => libc::SIGHUP,
        S::Sigusr1 => libc::SIGUSR1,
        S::Sigusr2 => libc::SIGUSR2,
        S::Sigwinch => libc::SIGWINCH,
        _ => libc::SIGTERM,
    }
}

/// Removes the container (killing it if it runs). Idempotent.
pub async fn remove(cri: &Arc<Cri>, id: &str) -> Result<()> {
    if id.is_empty() {
        return Err(CriError::InvalidArgument("container_id is required".into()));
    }
    if cri.store.container(id)?.is_none() {
        return Ok(());
    }
    match cri.manager().await?.delete_container(id, true).await {
        Ok(()) => {}
        Err(e) => {
            let e = CriError::from(e);
            if !is_not_found(&e) {
                return Err(e);
            }
        }
    }
    let (store, id2) = (cri.store.clone(), id.to_string());
    Cri::blocking(move || Ok(store.delete_container(&id2)?)).await?;
    crate::events::send(cri, id, ContainerEventType::ContainerDeletedEvent).await;
    Ok(())
}

/// berthd's view of the container, as the CRI's state and times.
pub struct Live {
    pub state: ContainerState,
    pub started_at: i64,
    pub finished_at: i64,
    pub exit_code: i32,
    pub pid: u32,
    /// berthd's ExitReason says the kernel's OOM killer struck.
    pub oom_killed: bool,
}

pub async fn live(cri: &Cri, id: &str) -> Result<Live> {
    let c = match cri.container(id).await {
        Ok(c) => c,
        Err(e) if is_not_found(&e) => {
            return Ok(Live {
                state: ContainerState::ContainerUnknown,
                started_at: 0,
                finished_at: 0,
                exit_code: 0,
                pid: 0,
                oom_killed: false,
            })
        }
        Err(e) => return Err(e),
    };
    let state = match c.status().await?.as_str() {
        "creating" | "created" => ContainerState::ContainerCreated,
        "running" | "paused" => ContainerState::ContainerRunning,
        "stopped" => ContainerState::ContainerExited,
        _ => ContainerState::ContainerUnknown,
    };
    let us = |t: u64| (t as i64).saturating_mul(1000);
    Ok(Live {
        state,
        started_at: us(c.started_at().await?),
        finished_at: us(c.exited_at().await?),
        exit_code: c.exit_code().await?,
        pid: c.pid().await?,
        oom_killed: state == ContainerState::ContainerExited
            && c.exit_reason().await? == OOM_KILLED,
    })
}

fn image_spec(r: &ContainerRecord) -> ImageSpec {
    ImageSpec {
        image: r.image.clone(),
        user_specified_image: r.image.clone(),
        image_ref: r.image_ref.clone(),
        ..Default::default()
    }
}

pub async fn status(cri: &Cri, id: &str) -> Result<ContainerStatus> {
    let r = get(cri, id)?;
    let l = live(cri, id).await?;
    let cfg = ContainerConfig::decode(r.config.as_slice()).unwrap_or_default();
    let reason = match l.state {
        ContainerState::ContainerExited if l.oom_killed => "OOMKilled",
        ContainerState::ContainerExited if l.exit_code == 0 => "Completed",
        ContainerState::ContainerExited => "Error",
        _ => "",
    };
    Ok(ContainerStatus {
        id: r.id.clone(),
        metadata: Some(ContainerMetadata {
            name: r.name.clone(),
            attempt: r.attempt,
        }),
        state: l.state as i32,
        created_at: r.created_at_ns,
        started_at: l.started_at,
        finished_at: l.finished_at,
        exit_code: l.exit_code,
        image: Some(image_spec(&r)),
        image_ref: r.image_ref.clone(),
        image_id: r.image_ref.clone(),
        reason: reason.into(),
        message: String::new(),
        labels: r.labels.clone().into_iter().collect(),
        annotations: r.annotations.clone().into_iter().collect(),
        mounts: cfg.mounts.clone(),
        log_path: r.log_path.clone(),
        resources: cfg.linux.as_ref().map(|l| ContainerResources {
            linux: l.resources.clone(),
            windows: None,
        }),
        user: None,
        stop_signal: r.stop_signal,
    })
}

/// berthd's ExitReason when the container's monitor saw its scope's
/// memory.events oom_kill grow (without a memory controller: never).
const OOM_KILLED: &str = "oom-killed";

pub async fn list(cri: &Cri, filter: Option<ContainerFilter>) -> Result<Vec<Container>> {
    let f = filter.unwrap_or_default();
    let mut out = Vec::new();
    for r in cri.store.containers()?.into_iter().filter(|c| c.made) {
        if !(f.id.is_empty() || r.id.starts_with(&f.id))
            || !(f.pod_sandbox_id.is_empty() || r.pod_id.starts_with(&f.pod_sandbox_id))
            || !f
                .label_selector
                .iter()
                .all(|(k, v)| r.labels.get(k) == Some(v))
        {
            continue;
        }
        let l = live(cri, &r.id).await?;
        if f.state.as_ref().is_some_and(|s| s.state != l.state as i32) {
            continue;
        }
        out.push(Container {
            id: r.id.clone(),
            pod_sandbox_id: r.pod_id.clone(),
            metadata: Some(ContainerMetadata {
                name: r.name.clone(),
                attempt: r.attempt,
            }),
            image: Some(image_spec(&r)),
            image_ref: r.image_ref.clone(),
            image_id: r.image_ref.clone(),
            state: l.state as i32,
            created_at: r.created_at_ns,
            labels: r.labels.clone().into_iter().collect(),
            annotations: r.annotations.clone().into_iter().collect(),
        });
    }
    Ok(out)
}
