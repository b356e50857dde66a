//! ContainerStats and PodSandboxStats from berthd's cgroup figures
//! (GetContainerStats); a figure berthd calls "unavailable" is left out.

use crate::api::*;
use crate::error::CriError;
use crate::state::Cri;

pub async fn stats_of(cri: &Cri, id: &str) -> Result<ContainerStats, CriError> {
    let rec = crate::containers::get(cri, id)?;
    let now = crate::store::now_ns();
    let m = cri.manager().await?;
    let s = m.get_container_stats(id).await.ok().unwrap_or_default();
    let num = |k: &str| s.get(k).and_then(|v| u64::try_from(v).ok());
    Ok(ContainerStats {
        attributes: Some(ContainerAttributes {
            id: id.into(),
            metadata: Some(ContainerMetadata {
                name: rec.name.clone(),
                attempt: rec.attempt,
            }),
            labels: rec.labels.clone().into_iter().collect(),
            annotations: rec.annotations.clone().into_iter().collect(),
        }),
        cpu: Some(CpuUsage {
            timestamp: now,
            usage_core_nano_seconds: num("cpu_usage_usec").map(|u| UInt64Value { value: u * 1000 }),
            ..Default::default()
        }),
        memory: Some(MemoryUsage {
            timestamp: now,
            working_set_bytes: num("memory_current").map(|v| UInt64Value { value: v }),
            usage_bytes: num("memory_current").map(|v| UInt64Value { value: v }),
            ..Default::default()
        }),
        writable_layer: Some(FilesystemUsage {
            timestamp: now,
            fs_id: Some(FilesystemIdentifier {
                mountpoint: "/var/lib/berth/images".into(),
            }),
            used_bytes: Some(UInt64Value { value: 0 }),
            inodes_used: Some(UInt64Value { value: 0 }),
        }),
        swap: None,
        io: None,
    })
}

pub async fn pod_stats(cri: &Cri, id: &str) -> Result<PodSandboxStats, CriError> {
    let p = crate::pods::get(cri, id).await?;
    let mut containers = Vec::new();
    for c in cri
        .store
        .containers()?
        .into_iter()
        .filter(|c| c.pod_id == id && c.made)
    {
        containers.push(stats_of(cri, &c.id).await?);
    }
    let now = crate::store::now_ns();
    let sum = |f: &dyn Fn(&ContainerStats) -> Option<u64>| -> Option<UInt64Value> {
        let v: Vec<u64> = containers.iter().filter_map(f).collect();
        (!v.is_empty()).then(|| UInt64Value {
            value: v.iter().sum(),
        })
    };
    let cpu = sum(&|c| {
        c.cpu
            .as_ref()?
            .usage_core_nano_seconds
            .as_ref()
            .map(|v| v.value)
    });
    let mem = sum(&|c| {
        c.memory
            .as_ref()?
            .working_set_bytes
            .as_ref()
            .map(|v| v.value)
    });
    Ok(PodSandboxStats {
        attributes: Some(PodSandboxAttributes {
            id: p.id.clone(),
            metadata: crate::pods::status(&p).metadata,
            labels: p.labels.clone().into_iter().collect(),
            annotations: p.annotations.clone().into_iter().collect(),
        }),
        linux: Some(LinuxPodSandboxStats {
            cpu: Some(CpuUsage {
                timestamp: now,
                usage_core_nano_seconds: cpu,
                ..Default::default()
            }),
            memory: Some(MemoryUsage {
                timestamp: now,
                working_set_bytes: mem,
                ..Default::default()
            }),
            containers,
            ..Default::default()
        }),
        windows: None,
    })
}
