//! berth-monitor: what berth-shim re-executes into for the container's life
//! (forward output to journald and attach clients, reap, record the exit),
//! and the pieces berth-shim shares with it (binding the attach socket,
//! handing fds over the re-exec, the records' file format).
//!
//! A crate of its own because a process's resident memory is mostly the code
//! and relocated data its binary maps: the monitor carries none of the
//! setup's D-Bus, JSON-schema and OCI code, and is shipped statically linked
//! (no ld.so, no libc.so pages: see scripts/static-monitor).

pub mod attach;
pub mod crilog;
pub mod journal;
pub mod keeper;
pub mod monitor;
pub mod oom;
pub mod quick_exit;
pub mod record;
