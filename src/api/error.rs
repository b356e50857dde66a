//! The named errors of io.berth.Berth1, one Rust enum (machined's model:
//! NoSuchMachine, MachineExists…). Each carries a message a person can act on.

use berth_init::error::Error as InitError;
use berth_proto::FailureKind;

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.berth.Berth1.Error")]
pub enum Error {
    #[zbus(error)]
    ZBus(zbus::Error),
    NotFound(String),
    AlreadyExists(String),
    InvalidArgument(String),
    /// The container is in the wrong state for the call.
    FailedPrecondition(String),
    ControllerUnavailable(String),
    PermissionDenied(String),
    /// The process's program is missing or not executable in the container.
    NotExecutable(String),
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

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
