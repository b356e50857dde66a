//! GetContainerEvents: every container state change berth-cri makes, and
//! exits berthd announces (ContainerExited), to each subscriber; the
//! kubelet's evented PLEG reads this stream.

use futures_util::StreamExt;

use crate::api::{ContainerEventResponse, ContainerEventType};
use crate::state::Cri;

pub async fn send(cri: &Cri, id: &str, kind: ContainerEventType) {
    if cri.events.receiver_count() == 0 {
        return;
    }
    let Ok(Some(rec)) = cri.store.container(id) else {
        return;
    };
    let statuses = match kind {
        ContainerEventType::ContainerDeletedEvent => Vec::new(),
        _ => crate::containers::status(cri, id)
            .await
            .into_iter()
            .collect(),
    };
    let pod = cri
        .store
        .pod(&rec.pod_id)
        .ok()
        .flatten()
        .map(|p| crate::pods::status(&p));
    let _ = cri.events.send(ContainerEventResponse {
        container_id: id.into(),
        container_event_type: kind as i32,
        created_at: crate::store::now_ns(),
        pod_sandbox_status: pod,
        containers_statuses: statuses,
    });
}

/// Forwards berthd's ContainerExited signals of our containers as
/// CONTAINER_STOPPED_EVENTs, for as long as berth-cri runs.
pub async fn watch_exits(cri: std::sync::Arc<Cri>) {
    let Ok(m) = cri.manager().await else { return };
    let Ok(mut exits) = m.receive_container_exited().await else {
        return;
    };
    while let Some(sig) = exits.next().await {
        if let Ok(a) = sig.args() {
            let id = a.id().to_string();
            if cri.store.container(&id).ok().flatten().is_some() {
                send(&cri, &id, ContainerEventType::ContainerStoppedEvent).await;
            }
        }
    }
}
