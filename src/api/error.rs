//! The named errors of io.berth.Berth1, one Rust enum (machined's model:
//! NoSuchMachine, MachineExists…). Each carries a message a person can act on.
//! The core's errors (crate::error) become these here and nowhere else.

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

/// The one mapping of the core's errors onto the wire.
impl From<crate::error::Error> for Error {
    fn from(e: crate::error::Error) -> Self {
        let (kind, msg) = e.into_parts();
        Error::of_kind(kind, msg)
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        crate::error::Error::from(e).into()
    }
}

impl From<berth_init::error::Error> for Error {
    fn from(e: berth_init::error::Error) -> Self {
        crate::error::Error::from(e).into()
    }
}

impl Error {
    fn of_kind(kind: FailureKind, msg: String) -> Error {
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
