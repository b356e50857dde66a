//! berth-init: turns an OCI bundle into a process in fresh namespaces, blocked on
//! the exec FIFO until started — the create/start split of runc, as a library the
//! shim and the `berth-runtime` CLI share.
//!
//! Creator side (runs in the caller): [`create`], [`start`], [`state`], [`signal`].
//! Container side (runs in the cloned child, up to execve): [`child`].

pub mod capabilities;
pub mod cgroups;
pub mod hooks;
pub mod seccomp;
