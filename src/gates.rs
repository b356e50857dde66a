//! Per-container gates: held while a change of state is made and announced
//! on the bus, so the signals go out in the order the changes happened
//! (Start's Status=running, then the exit the shim's watch records, then
//! Delete's ContainerRemoved).
//!
//! A gate lives exactly as long as someone holds or awaits it. Deleting a
//! container does not drop its gate: a task still waiting on it (the exit
//! watch, a Start that lost the race) would otherwise keep the old mutex
//! while a container re-created under the same id got a fresh one, and the
//! two could announce at once. A gate nobody uses is pruned, so the map never
//! grows with ids that are gone.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::OwnedMutexGuard;

/// One id's gate and how many tasks hold or await it.
struct Entry {
    gate: Arc<tokio::sync::Mutex<()>>,
    users: usize,
}

#[derive(Default)]
pub struct Gates {
    map: Mutex<HashMap<String, Entry>>,
}

/// The gate of one id, held until dropped.
pub struct GateGuard<'a> {
    gates: &'a Gates,
    id: String,
    held: Option<OwnedMutexGuard<()>>,
}

impl Gates {
    fn map(&self) -> MutexGuard<'_, HashMap<String, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Waits for and takes the gate of `id`.
    pub async fn lock(&self, id: &str) -> GateGuard<'_> {
        let gate = {
            let mut map = self.map();
            let entry = map.entry(id.to_string()).or_insert_with(|| Entry {
                gate: Arc::default(),
                users: 0,
            });
            entry.users += 1;
            entry.gate.clone()
        };
        // Counted from here: if this future is dropped while waiting, the
        // guard's drop still gives the count back.
        let mut guard = GateGuard {
            gates: self,
            id: id.to_string(),
            held: None,
        };
        guard.held = Some(gate.lock_owned().await);
        guard
    }

    /// Gates in the map (held or awaited).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.map().len()
    }
}

impl Drop for GateGuard<'_> {
    fn drop(&mut self) {
        let mut map = self.gates.map();
        // Released under the map's lock, so a newcomer finds either this
        // gate (still counted) or none at all, never one on its way out.
        self.held = None;
        if let Some(entry) = map.get_mut(&self.id) {
            entry.users -= 1;
            if entry.users == 0 {
                map.remove(&self.id);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_recreated_id_shares_the_gate_of_tasks_still_waiting() {
        let gates = Arc::new(Gates::default());
        // Delete holds the gate; the exit watch of the old container waits.
        let delete = gates.lock("c").await;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let watcher = {
            let gates = gates.clone();
            tokio::spawn(async move {
                let _announcing = gates.lock("c").await;
                let _ = rx.await;
            })
        };
        while gates.map().get("c").map(|e| e.users) != Some(2) {
            tokio::task::yield_now().await;
        }
        // Delete is done; the id is created again while the watch announces.
        drop(delete);
        let create = tokio::time::timeout(Duration::from_millis(200), gates.lock("c")).await;
        assert!(
            create.is_err(),
            "the new container's gate must be the one the old watch holds"
        );
        let _ = tx.send(());
        watcher.await.unwrap();
        let create = tokio::time::timeout(Duration::from_secs(5), gates.lock("c")).await;
        assert!(create.is_ok(), "free once the watch is done");
        drop(create);
        assert_eq!(gates.len(), 0, "a gate nobody uses is pruned");
    }

    #[tokio::test]
    async fn waits_given_up_leave_no_gates_behind() {
        let gates = Gates::default();
        let held = gates.lock("c").await;
        for _ in 0..100 {
            let r = tokio::time::timeout(Duration::from_millis(1), gates.lock("c")).await;
            assert!(r.is_err());
        }
        assert_eq!(gates.map().get("c").map(|e| e.users), Some(1));
        drop(held);
        for i in 0..100 {
            drop(gates.lock(&format!("id{i}")).await);
        }
        assert_eq!(gates.len(), 0);
    }
}
