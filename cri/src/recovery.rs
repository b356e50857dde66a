//! At start: repair what a berth-cri killed mid-call left (a kill -9 at any
//! instant leaves intent records, never unrecorded side effects), and what
//! a reboot took (pinned namespaces live in /run).

use std::collections::HashSet;
use std::sync::Arc;

use crate::state::{Cri, POD_LABEL};
use crate::store::PodState;

pub async fn repair(cri: &Arc<Cri>) {
    let Ok(pods) = cri.store.pods() else { return };
    let known: HashSet<String> = pods.iter().map(|p| p.id.clone()).collect();
    for mut p in pods {
        let sb = cri.sandboxes.clone();
        match p.state {
            // RunPodSandbox did not finish: undo it all.
            PodState::Creating => {
                let (store, id) = (cri.store.clone(), p.id.clone());
                let r = Cri::blocking(move || {
                    sb.remove(&id)?;
                    Ok(store.delete_pod(&id)?)
                })
                .await;
                log(&p.id, "half-made pod removed", r);
            }
            // After a reboot its namespaces are gone: NotReady, as the
            // kubelet then makes a new sandbox.
            PodState::Ready
                if !p.host_network
                    && !berth_net::netns::is_pinned(&cri.sandboxes.ns_path(&p.id, "net")) =>
            {
                p.state = PodState::NotReady;
                let store = cri.store.clone();
                let id = p.id.clone();
                let r = Cri::blocking(move || {
                    let _ = sb.teardown(&p.id);
                    Ok(store.put_pod(&p)?)
                })
                .await;
                log(&id, "pod without its namespaces marked not ready", r);
            }
            _ => {}
        }
    }
    // Sandbox directories no record names (made, then the record lost).
    for id in cri.sandboxes.on_disk() {
        if !known.contains(&id) {
            let sb = cri.sandboxes.clone();
            let id2 = id.clone();
            let r = Cri::blocking(move || Ok(sb.remove(&id2)?)).await;
            log(&id, "stray sandbox removed", r);
        }
    }
    // Containers: a record berthd never confirmed, or a berthd container
    // of ours with no record.
    let Ok(records) = cri.store.containers() else {
        return;
    };
    let Ok(m) = cri.manager().await else { return };
    let listed = m.list_containers().await.unwrap_or_default();
    let in_berthd: HashSet<String> = listed.iter().map(|(id, _, _)| id.clone()).collect();
    let ours: HashSet<String> = records.iter().map(|c| c.id.clone()).collect();
    for c in records {
        if !c.made || !known.contains(&c.pod_id) {
            if in_berthd.contains(&c.id) {
                let _ = m.delete_container(&c.id, true).await;
            }
            let _ = cri.store.delete_container(&c.id);
            tracing::info!(container = %c.id, "half-made container removed");
        }
    }
    for (id, _, _) in listed {
        if ours.contains(&id) {
            continue;
        }
        let labelled = match cri.container(&id).await {
            Ok(c) => c
                .labels()
                .await
                .map(|l| l.contains_key(POD_LABEL))
                .unwrap_or(false),
            Err(_) => false,
        };
        if labelled {
            let _ = m.delete_container(&id, true).await;
            tracing::info!(container = %id, "berthd container without a CRI record removed");
        }
    }
}

fn log(id: &str, what: &str, r: crate::error::Result<()>) {
    match r {
        Ok(()) => tracing::info!(pod = %id, "{what}"),
        Err(e) => tracing::warn!(pod = %id, "{what}: {e}"),
    }
}
