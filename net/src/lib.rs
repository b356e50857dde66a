//! berth's container networking, on the CNI plugins Debian ships
//! (containernetworking-plugins: bridge, host-local, portmap, …).
//!
//! Synchronous and free of D-Bus: berthd calls it from its blocking pool.
//! - [`cni`]: the CNI 1.0 protocol (ADD/DEL/CHECK/VERSION over a conflist,
//!   `prevResult` chaining) — the caller side libcni is in Go.
//! - [`cache`]: each attachment's config and result on disk, so DEL works
//!   after a crash (as libcni's /var/lib/cni/results).
//! - [`netns`]: network namespaces pinned to files (no process holds them).
//! - [`network`]: a berth network's definition and the conflist made from it.
//! - [`ports`]: podman's `-p` syntax.
//! - [`files`]: the container's /etc/hosts, /etc/hostname, /etc/resolv.conf.
//! - [`link`]: lo up, a removed network's bridge deleted (ioctls).
//! - [`masquerade`]: one outbound NAT rule per network.

pub mod cache;
pub mod cni;
pub mod files;
pub mod link;
pub mod masquerade;
pub mod netns;
pub mod network;
pub mod ports;

pub use cni::{CniError, Invocation};
pub use network::{NetworkError, NetworkSpec};
pub use ports::{PortError, PortMapping};
