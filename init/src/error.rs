//! The crate-level error of the creator-side operations (create, start, kill,
//! delete, …): each module's error, plus the container-level ones.

use berth_proto::FailureKind;

use crate::container::Status;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid container id {id:?}: {rule}")]
    InvalidId { id: String, rule: &'static str },
    #[error("container {0} already exists")]
    AlreadyExists(String),
    #[error("container {0} does not exist")]
    NotFound(String),
    #[error("cannot {op} container {id}: it is {status}")]
    WrongState {
        id: String,
        op: &'static str,
        status: Status,
    },
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    SeccompAgent(#[from] crate::seccomp::agent::AgentError),
    #[error("container init: {0}")]
    Init(String),
    /// The process's program is missing or not executable in the container.
    #[error("{0}")]
    NotExecutable(String),
    #[error("{what}: {source}")]
    Io {
        what: String,
        source: std::io::Error,
    },
    #[error("{0}")]
    InvalidArgument(String),
    #[error("{message} (and cleaning up failed: {cleanup})")]
    WithCleanup { message: String, cleanup: String },
    /// The starter could not place the init in its scope (cgroups::placed):
    /// its error, with the kind it had there.
    #[error("{message}")]
    Placement { message: String, kind: FailureKind },
}

impl Error {
    pub fn io(what: impl Into<String>, source: impl Into<std::io::Error>) -> Self {
        Error::Io {
            what: what.into(),
            source: source.into(),
        }
    }

    /// The kind of failure, carried across processes (the shim's report to
    /// berthd) where the enum itself cannot go; its names are
    /// io.berth.Berth1's error names.
    pub fn kind(&self) -> FailureKind {
        match self {
            Error::InvalidId { .. } | Error::Spec(_) | Error::InvalidArgument(_) => {
                FailureKind::InvalidArgument
            }
            // The scope's name is taken (another container's, or a unit
            // someone else started under it): the name already exists.
            Error::AlreadyExists(_)
            | Error::Cgroup(crate::cgroups::CgroupError::UnitExists { .. }) => {
                FailureKind::AlreadyExists
            }
            Error::NotFound(_) => FailureKind::NotFound,
            Error::Placement { kind, .. } => *kind,
            Error::NotExecutable(_) => FailureKind::NotExecutable,
            Error::WrongState { .. } => FailureKind::FailedPrecondition,
            Error::Cgroup(crate::cgroups::CgroupError::ControllerUnavailable { .. }) => {
                FailureKind::ControllerUnavailable
            }
            _ => FailureKind::Internal,
        }
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// Why a container's init, or an exec's process, stopped before execve
/// (berth-proto: it crosses from the child to its creator).
pub use berth_proto::ChildFailure;

impl Error {
    /// A child's failure as its creator's error; `prefix` says whose ("exec
    /// in ID: ", or "").
    pub fn of_child(failure: ChildFailure, prefix: &str) -> Error {
        match failure {
            ChildFailure::Setup(m) => Error::Init(format!("{prefix}{m}")),
            ChildFailure::NotExecutable(m) => Error::NotExecutable(format!("{prefix}{m}")),
        }
    }
}

/// The longest container id, in bytes: it names a directory, a systemd unit
/// (`berth-<id>.scope`, under the 255-byte name limit with room to spare)
/// and a D-Bus path segment.
pub const MAX_ID: usize = 128;

/// Container ids: what runc accepts, minus the surprises. They name
/// directories, units and D-Bus paths, so `/`, `..`, NUL and control
/// characters are out.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |rule| {
        Err(Error::InvalidId {
            id: id.into(),
            rule,
        })
    };
    if id.is_empty() {
        return bad("must not be empty");
    }
    if id.len() > MAX_ID {
        return bad("longer than 128 bytes (MAX_ID)");
    }
    if id == "." || id == ".." {
        return bad("must not be . or ..");
    }
    if !id
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'+'))
    {
        return bad("only A-Z a-z 0-9 _ - . + are allowed");
    }
    if !id.as_bytes()[0].is_ascii_alphanumeric() {
        return bad("must start with a letter or digit");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "web-1", "x.y_z+1", &"a".repeat(128)] {
            assert!(validate_id(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "..",
            "a/b",
            "a\0b",
            "-a",
            "a b",
            "é",
            "a\nb",
            &"a".repeat(129),
        ] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }
}
