//! A delete in progress, marked so a berthd killed in the middle of it
//! finishes it at its next start.
//!
//! A delete tears the container down piece by piece — its scope, its
//! rootfs, its network (CNI DEL: the veth and the lease go first, the
//! cache entry last), its bundle — and removes the record last. Killed in
//! between, berthd used to come back to a record whose parts were half
//! gone (a stopped container with its network namespace but no veth or
//! lease), which the start-up sweeps, keyed on "no record", never touch.
//! With the mark, recovery takes such a record down the rest of the way,
//! as the undo of a create is finished (recovery.rs): the user asked for
//! it to go.
//!
//! The mark is an empty file `<run dir>/.deleting-<id>` (/run is tmpfs: no
//! fsync on the delete's path; no container id starts with a dot). After a
//! reboot there is no mark, and no container left to delete either.

use std::path::{Path, PathBuf};

const PREFIX: &str = ".deleting-";

fn mark_path(run_dir: &Path, id: &str) -> PathBuf {
    run_dir.join(format!("{PREFIX}{id}"))
}

/// The delete of `id` has begun. Not made (a full /run): the delete goes
/// on unmarked, as before there were marks.
pub fn mark(run_dir: &Path, id: &str) {
    if let Err(e) = std::fs::File::create(mark_path(run_dir, id)) {
        tracing::warn!(container = %id, "marking its delete: {e}");
    }
}

/// The delete of `id` is over (done, or failed with the record kept).
pub fn unmark(run_dir: &Path, id: &str) {
    let _ = std::fs::remove_file(mark_path(run_dir, id));
}

/// The ids whose delete a killed berthd left unfinished.
pub fn pending(run_dir: &Path) -> Vec<String> {
    std::fs::read_dir(run_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_prefix(PREFIX).map(str::to_string)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mark_is_pending_until_unmarked() {
        let dir = std::env::temp_dir().join(format!("berth-deleting-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::create_dir_all(dir.join("c1")).unwrap();
        assert!(pending(&dir).is_empty());
        mark(&dir, "c1");
        assert_eq!(pending(&dir), vec!["c1".to_string()]);
        unmark(&dir, "c1");
        assert!(pending(&dir).is_empty());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
