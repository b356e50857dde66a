//! berth-cri's errors, turned into gRPC statuses only at the edge
//! (`From<CriError> for tonic::Status`). berthd's named D-Bus errors keep
//! their kind: io.berth.Berth1.Error.NotFound is NotFound here too.

use tonic::{Code, Status};

#[derive(Debug, thiserror::Error)]
pub enum CriError {
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    #[error("{0}")]
    DeadlineExceeded(String),
    #[error("{0}")]
    Unimplemented(String),
    #[error("{0}")]
    Internal(String),
    /// berthd said no (or could not be reached).
    #[error("berthd: {msg}")]
    Berthd { code: Code, msg: String },
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Pod(#[from] crate::sandbox::SandboxError),
}

pub type Result<T, E = CriError> = std::result::Result<T, E>;

impl From<zbus::Error> for CriError {
    fn from(e: zbus::Error) -> Self {
        let code = match &e {
            zbus::Error::MethodError(name, _, _) => {
                match name.rsplit('.').next().unwrap_or_default() {
                    "NotFound" => Code::NotFound,
                    "AlreadyExists" => Code::AlreadyExists,
                    "InvalidArgument" | "NotExecutable" => Code::InvalidArgument,
                    "FailedPrecondition" | "ControllerUnavailable" => Code::FailedPrecondition,
                    "PermissionDenied" | "AccessDenied" => Code::PermissionDenied,
                    _ => Code::Internal,
                }
            }
            _ => Code::Unavailable,
        };
        CriError::Berthd {
            code,
            msg: berth_client::describe(&e),
        }
    }
}

impl From<CriError> for Status {
    fn from(e: CriError) -> Status {
        let code = match &e {
            CriError::InvalidArgument(_) => Code::InvalidArgument,
            CriError::NotFound(_) => Code::NotFound,
            CriError::AlreadyExists(_) => Code::AlreadyExists,
            CriError::FailedPrecondition(_) => Code::FailedPrecondition,
            CriError::DeadlineExceeded(_) => Code::DeadlineExceeded,
            CriError::Unimplemented(_) => Code::Unimplemented,
            CriError::Berthd { code, .. } => *code,
            CriError::Internal(_) | CriError::Store(_) | CriError::Pod(_) => Code::Internal,
        };
        Status::new(code, e.to_string())
    }
}

/// Whether berthd said the container is not there.
pub fn is_not_found(e: &CriError) -> bool {
    matches!(
        e,
        CriError::Berthd {
            code: Code::NotFound,
            ..
        } | CriError::NotFound(_)
    )
}
