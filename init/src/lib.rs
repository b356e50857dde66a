//! berth-init: turns an OCI bundle into a process in fresh namespaces, blocked on
//! the exec FIFO until started — the create/start split of runc, as a library the
//! shim and the `berth-runtime` CLI share.
//!
//! Creator side (runs in the caller): [`create::create`], and the verbs on an
//! existing container in [`container`] (start, kill, pause, resume, delete).
//! Container side (runs in the cloned child, up to execve): [`child`], using
//! [`namespaces`], [`rootfs`], [`process`], [`capabilities`], [`seccomp`],
//! [`console`].

pub mod capabilities;
pub mod cgroup_mount;
pub mod cgroups;
pub mod child;
pub mod clone_into;
pub mod console;
pub mod container;
pub mod copyup;
pub mod create;
pub mod dev_nodes;
pub mod error;
pub mod exec;
pub mod hooks;
pub mod idmap;
pub mod in_root;
pub mod lsm;
pub mod mounts;
pub mod namespaces;
pub mod paths;
pub mod process;
pub mod root_switch;
pub mod rootfs;
pub mod seccomp;
pub mod signal;
pub mod spec;
pub mod sync;

pub use error::{Error, Result};
