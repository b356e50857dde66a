//! berth's images: a content store of sha256-verified blobs, image records
//! and reference counts in LMDB, import of OCI layouts and docker/podman
//! `save` archives, export to OCI layouts, layer snapshots stacked with
//! overlayfs into container root filesystems, and OCI runtime specs made
//! from image configs. Layout and rules: docs/images.md.
//!
//! ```no_run
//! use berth_image::{ImageStore, ImportOptions, SpecOptions};
//! # fn main() -> Result<(), berth_image::Error> {
//! let store = ImageStore::open("/var/lib/berth/images".as_ref())?;
//! store.import("/tmp/busybox.tar".as_ref(), &ImportOptions::default())?;
//! let rootfs = store.create_rootfs("web", "busybox")?;
//! let root = rootfs.mount()?;
//! let spec = store.generate_spec("busybox", &root, &SpecOptions::default())?;
//! # let _ = spec; Ok(()) }
//! ```

pub mod archive;
pub mod content;
pub mod digest;
pub mod export;
pub mod import;
pub mod meta;
pub mod oci;
pub mod pull;
pub mod reference;
pub mod registries;
mod registry_client;
pub mod rootfs;
pub mod snapshot;
pub mod spec;
pub mod store;
pub mod unpack;

use std::path::PathBuf;

pub use digest::Digest;
pub use import::ImportOptions;
pub use meta::ImageRecord;
pub use oci::Platform;
pub use pull::{Progress, PullOptions};
pub use reference::Reference;
pub use registries::Registries;
pub use rootfs::Rootfs;
pub use spec::SpecOptions;
pub use store::{GcReport, ImageInfo, ImageStore, DEFAULT_ROOT};

/// Every error of the crate, by the module it comes from.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no image {0:?}")]
    NoImage(String),
    #[error("{0:?} matches more than one image")]
    Ambiguous(String),
    #[error("container {0:?} already has a rootfs")]
    RootfsExists(String),
    #[error("container {0:?} has no rootfs")]
    NoRootfs(String),
    #[error("snapshot {0} is missing")]
    MissingSnapshot(Digest),
    #[error("blob {digest} is not what it should be: {error}")]
    BadBlob { digest: Digest, error: String },
    #[error(transparent)]
    Import(#[from] import::ImportError),
    #[error(transparent)]
    Export(#[from] export::ExportError),
    #[error(transparent)]
    Pull(#[from] pull::PullError),
    #[error(transparent)]
    Content(#[from] content::ContentError),
    #[error(transparent)]
    Meta(#[from] meta::MetaError),
    #[error(transparent)]
    Snapshot(#[from] snapshot::SnapshotError),
    #[error(transparent)]
    Rootfs(#[from] rootfs::RootfsError),
    #[error(transparent)]
    Spec(#[from] spec::SpecError),
    #[error(transparent)]
    Reference(#[from] reference::ReferenceError),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

/// How a caller (berthd's D-Bus errors) should classify an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// No such image / rootfs.
    NotFound,
    /// The name or rootfs exists.
    AlreadyExists,
    /// The input is not a valid image, or an argument is bad.
    InvalidArgument,
    /// The host cannot do it (no overlayfs), or the registry cannot be reached.
    Unavailable,
    /// The registry refused the credentials.
    PermissionDenied,
    Internal,
}

impl Error {
    pub fn kind(&self) -> ErrorKind {
        use import::ImportError as I;
        match self {
            Error::NoImage(_) | Error::NoRootfs(_) => ErrorKind::NotFound,
            Error::RootfsExists(_) | Error::Meta(meta::MetaError::RootfsExists(_)) => {
                ErrorKind::AlreadyExists
            }
            Error::Ambiguous(_)
            | Error::Reference(_)
            | Error::Spec(_)
            | Error::Export(export::ExportError::DestinationNotEmpty(_)) => {
                ErrorKind::InvalidArgument
            }
            Error::Import(I::Io { .. }) => ErrorKind::Internal,
            Error::Pull(pull::PullError::Http { status: 404, .. }) => ErrorKind::NotFound,
            Error::Pull(pull::PullError::Auth { .. }) => ErrorKind::PermissionDenied,
            Error::Pull(pull::PullError::Http { .. } | pull::PullError::Transport { .. }) => {
                ErrorKind::Unavailable
            }
            Error::Pull(pull::PullError::Io { .. }) => ErrorKind::Internal,
            Error::Pull(_) => ErrorKind::InvalidArgument,
            Error::Import(_) => ErrorKind::InvalidArgument,
            Error::Snapshot(
                snapshot::SnapshotError::Unpack { .. }
                | snapshot::SnapshotError::UnknownMediaType { .. },
            ) => ErrorKind::InvalidArgument,
            Error::Content(
                content::ContentError::DigestMismatch { .. }
                | content::ContentError::SizeMismatch { .. },
            ) => ErrorKind::InvalidArgument,
            Error::Rootfs(rootfs::RootfsError::BadId(_)) => ErrorKind::InvalidArgument,
            Error::Rootfs(
                rootfs::RootfsError::NoOverlay(_) | rootfs::RootfsError::UpperOnOverlay(_),
            ) => ErrorKind::Unavailable,
            _ => ErrorKind::Internal,
        }
    }
}
