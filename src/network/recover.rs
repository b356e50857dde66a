//! At start: tear down what a crash left of networking — CNI attachments,
//! pinned namespaces and files of containers with no record (a berthd
//! killed mid-create or mid-delete). Records still "creating" are undone
//! by recovery.rs's undo_create, which detaches too.

use std::collections::HashSet;

use berth_net::cache::Cache;

use super::NetPaths;

/// Detaches every container id that has networking leftovers but is not in
/// `known`; returns the ids torn down.
pub fn sweep(paths: &NetPaths, known: &HashSet<String>) -> Vec<String> {
    let mut ids: Vec<String> = Cache::new(&paths.cache_dir).ids();
    ids.extend(berth_net::netns::list(&paths.netns_dir));
    ids.extend(berth_net::netns::list(&paths.files_dir));
    ids.sort();
    ids.dedup();
    ids.retain(|id| !known.contains(id));
    for id in &ids {
        tracing::info!(container = %id, "releasing the network of a container with no record");
        super::attach::detach(paths, id);
    }
    ids
}
