//! berth-cri: the Kubernetes Container Runtime Interface (v1) over berthd.
//! Pods are berth-cri's own (pinned namespaces + CNI, sandbox.rs); each
//! container is a berthd container. docs/cri.md tells the whole design.

/// The generated CRI v1 types, servers and clients (runtime.v1).
#[allow(clippy::all, clippy::pedantic, missing_docs)]
pub mod api {
    tonic::include_proto!("runtime.v1");
}

pub mod containers;
pub mod error;
pub mod events;
pub mod exec;
pub mod images;
pub mod pod_userns;
pub mod pods;
pub mod recovery;
pub mod sandbox;
pub mod service;
pub mod service_images;
pub mod spec;
#[cfg(test)]
mod spec_tests;
pub mod state;
pub mod stats;
pub mod store;
pub mod stream;
pub mod update;

/// A gRPC channel to a CRI server on a unix socket (tests, tools).
pub async fn connect(
    path: &std::path::Path,
) -> Result<tonic::transport::Channel, tonic::transport::Error> {
    let path = path.to_owned();
    // The URI is required but unused: every connection goes to the socket.
    tonic::transport::Endpoint::from_static("http://berth-cri.invalid")
        .connect_with_connector(tower::service_fn(move |_: tonic::transport::Uri| {
            let path = path.clone();
            async move {
                let s = tokio::net::UnixStream::connect(path).await?;
                Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(s))
            }
        }))
        .await
}
