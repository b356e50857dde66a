//! The named errors of io.berth.Berth1, one Rust enum (machined's model:
//! NoSuchMachine, MachineExists…). Each carries a message a person can act on.

use berth_init::error::Error as InitError;

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
        let msg = e.to_string();
        match e {
            InitError::InvalidId { .. } | InitError::Spec(_) | InitError::InvalidArgument(_) => {
                Error::InvalidArgument(msg)
            }
            InitError::AlreadyExists(_) => Error::AlreadyExists(msg),
            InitError::NotFound(_) => Error::NotFound(msg),
            InitError::WrongState { .. } => Error::FailedPrecondition(msg),
            InitError::Cgroup(berth_init::cgroups::CgroupError::ControllerUnavailable {
                ..
            }) => Error::ControllerUnavailable(msg),
            _ => Error::Internal(msg),
        }
    }
}

/// The shim reports setup failures as text; sort them like the library does.
pub fn from_shim_report(msg: &str) -> Error {
    if msg.contains("cgroup controller") {
        Error::ControllerUnavailable(msg.into())
    } else if msg.contains("config.json")
        || msg.contains("bundle")
        || msg.contains("exec:")
        || msg.contains("invalid")
    {
        Error::InvalidArgument(msg.into())
    } else {
        Error::Internal(msg.into())
    }
}
