//! berth-cri: the Kubernetes Container Runtime Interface (v1) over berthd.

/// The generated CRI v1 types, servers and clients (runtime.v1).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod api {
    tonic::include_proto!("runtime.v1");
}
