//! The ids callers name containers and execs by, checked once here with
//! berth-init's `validate_id` (the one definition of a valid id, its length
//! limit included: berthd keeps no copy that could drift).
//!
//! Ids become file names under /run/berth/<id>/, unit names and object
//! paths, so every id that reaches a path goes through one of these first.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::init_calls::{validate_id, InitError};

use crate::daemon::{brief, now_us};
use crate::error::{Error, Result};

/// The message for an id `validate_id` refused: quoted briefly (a caller may
/// send megabytes), with the rule it broke.
fn refused(what: &str, id: &str, e: InitError) -> String {
    match e {
        InitError::InvalidId { rule, .. } => format!("invalid {what} {:?}: {rule}", brief(id)),
        other => format!("invalid {what} {:?}: {other}", brief(id)),
    }
}

/// A new container's id.
pub fn check_new(id: &str) -> Result<()> {
    validate_id(id).map_err(|e| Error::InvalidArgument(refused("container id", id, e)))
}

/// An id a caller looks a container up by: one that could never be valid
/// names nothing (and LMDB refuses empty keys and keys over 511 bytes,
/// which would be an Internal error).
pub fn check_lookup(id: &str) -> Result<()> {
    validate_id(id).map_err(|_| Error::NotFound(format!("no container {}", brief(id))))
}

/// An exec id, before it becomes part of a path (exec-<id>.*).
pub fn check_exec(exec_id: &str) -> Result<()> {
    validate_id(exec_id).map_err(|e| Error::InvalidArgument(refused("exec id", exec_id, e)))
}

/// A fresh exec id: the time tells ids of different berthd runs apart, the
/// counter those made in one microsecond (concurrent ExecContainer calls).
pub fn new_exec_id() -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!("exec{}.{}", now_us(), NEXT.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_exec_ids_never_collide() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| new_exec_id()).collect();
        assert_eq!(ids.len(), 10_000);
        assert!(ids.iter().all(|id| check_exec(id).is_ok()));
    }

    #[test]
    fn ids_that_would_leave_the_state_dir_are_refused() {
        for bad in ["../x", "..", "a/b", "", ".x", &"a".repeat(129)] {
            assert!(
                matches!(check_exec(bad), Err(Error::InvalidArgument(_))),
                "{bad}"
            );
            assert!(
                matches!(check_lookup(bad), Err(Error::NotFound(_))),
                "{bad}"
            );
        }
        let long = "b".repeat(40_000);
        let Err(Error::InvalidArgument(msg)) = check_new(&long) else {
            panic!("a 40 kB id was accepted");
        };
        assert!(msg.len() < 200, "{msg}");
    }
}
