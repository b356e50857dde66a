//! The core's errors: what went wrong, with a kind a caller can act on
//! (berth-proto's FailureKind, shared with berth-init and the shim). The core
//! knows nothing of D-Bus; api/error.rs maps these onto
//! `io.berth.Berth1.Error.*`, once, at the edge (machined keeps machine.c
//! apart from machine-dbus.c the same way).

use crate::init_calls::InitError;
use berth_proto::FailureKind;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    InvalidArgument(String),
    /// The container is in the wrong state for the call.
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    ControllerUnavailable(String),
    #[error("{0}")]
    PermissionDenied(String),
    /// The process's program is missing or not executable in the container.
    #[error("{0}")]
    NotExecutable(String),
    /// A network or volume still used by containers.
    #[error("{0}")]
    InUse(String),
    /// A CNI plugin failed (its own message kept) or is missing.
    #[error("{0}")]
    Network(String),
    #[error("{0}")]
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// The error of `kind` (as berth-init's `Error::kind` and the shim's
    /// report name it).
    pub fn of_kind(kind: FailureKind, msg: String) -> Error {
        match kind {
            FailureKind::InvalidArgument => Error::InvalidArgument(msg),
            FailureKind::AlreadyExists => Error::AlreadyExists(msg),
            FailureKind::NotFound => Error::NotFound(msg),
            FailureKind::FailedPrecondition => Error::FailedPrecondition(msg),
            FailureKind::ControllerUnavailable => Error::ControllerUnavailable(msg),
            FailureKind::PermissionDenied => Error::PermissionDenied(msg),
            FailureKind::NotExecutable => Error::NotExecutable(msg),
            FailureKind::Internal => Error::Internal(msg),
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        use crate::store::StoreError as S;
        match e {
            S::Exists(id) => Error::AlreadyExists(format!("container {id} already exists")),
            S::NotFound(id) => Error::NotFound(format!("no container {id}")),
            other => Error::Internal(other.to_string()),
        }
    }
}

impl From<InitError> for Error {
    fn from(e: InitError) -> Self {
        Error::of_kind(e.kind(), e.to_string())
    }
}
