//! berth-shim's pieces, shared by its two binaries: `berth-shim` (detach,
//! create the container, place itself, report) and `berth-monitor` (what the
//! shim re-executes into for the container's life: forward output, reap,
//! record the exit). Two binaries because a process's resident memory is
//! mostly the code and relocated data its binary maps: the monitor binary
//! carries none of the setup's D-Bus, JSON and OCI code.

pub mod attach;
pub mod journal;
pub mod monitor;
pub mod record;
