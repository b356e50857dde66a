//! The named errors of io.berth.Berth1, one Rust enum (machined's model:
//! NoSuchMachine, MachineExists…). Each carries a message a person can act on.
//! The core's errors (crate::error) become these here and nowhere else.

#[derive(Debug, zbus::DBusError)]
#[zbus(prefix = "io.berth.Berth1.Error")]
// NetworkError is the wire name the API documents (io.berth.Berth1.Error.NetworkError).
#[allow(clippy::enum_variant_names)]
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
    /// A network (or volume) is still used by containers.
    InUse(String),
    /// A CNI plugin failed or is missing: the plugin's own message.
    NetworkError(String),
    Internal(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// The one mapping of the core's errors onto the wire.
impl From<crate::error::Error> for Error {
    fn from(e: crate::error::Error) -> Self {
        use crate::error::Error as Core;
        match e {
            Core::NotFound(m) => Error::NotFound(m),
            Core::AlreadyExists(m) => Error::AlreadyExists(m),
            Core::InvalidArgument(m) => Error::InvalidArgument(m),
            Core::FailedPrecondition(m) => Error::FailedPrecondition(m),
            Core::ControllerUnavailable(m) => Error::ControllerUnavailable(m),
            Core::PermissionDenied(m) => Error::PermissionDenied(m),
            Core::NotExecutable(m) => Error::NotExecutable(m),
            Core::InUse(m) => Error::InUse(m),
            Core::Network(m) => Error::NetworkError(m),
            Core::Internal(m) => Error::Internal(m),
        }
    }
}

impl From<crate::store::StoreError> for Error {
    fn from(e: crate::store::StoreError) -> Self {
        crate::error::Error::from(e).into()
    }
}

impl From<crate::init_calls::InitError> for Error {
    fn from(e: crate::init_calls::InitError) -> Self {
        crate::error::Error::from(e).into()
    }
}
