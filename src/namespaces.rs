//! A create's `pid`, `ipc` and `uts` options resolved to what its spec gets:
//! a namespace of its own, the host's, or a running container's by its
//! init's /proc/<pid>/ns/<kind> — its pid checked against reuse by the
//! start time recorded with it, so a recycled pid's namespace is never
//! joined. Read-only: nothing is made, so a refusal leaves nothing.

use std::path::PathBuf;

use crate::error::Error;
use crate::lifecycle::Status;
use crate::options::namespaces::{NamespaceOptions, NsKind, NsMode};
use crate::store::Store;

/// What the spec's entry for one namespace kind becomes.
#[derive(Debug, Clone, PartialEq)]
pub enum NsSpec {
    /// A new one made by the runtime.
    New,
    /// None in the spec: the host's.
    Host,
    /// Joined by path.
    Path(PathBuf),
}

/// The resolved options (CreateOptions::ns_spec).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecNamespaces {
    pub entries: Vec<(NsKind, NsSpec)>,
    /// The UTS namespace is shared: the spec must set no hostname.
    pub shared_uts: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    #[error("option {kind} container:{id}: no container {id}")]
    NoContainer { kind: &'static str, id: String },
    #[error(
        "option {kind} container:{id}: container {id} is {status}, it has no namespaces to join"
    )]
    NotRunning {
        kind: &'static str,
        id: String,
        status: Status,
    },
    #[error("option {kind} container:{id}: its init (pid {pid}) is gone")]
    InitGone {
        kind: &'static str,
        id: String,
        pid: u32,
    },
    #[error("option {kind}: reading the store: {why}")]
    Store { kind: &'static str, why: String },
}

impl From<NamespaceError> for Error {
    fn from(e: NamespaceError) -> Self {
        match e {
            NamespaceError::NoContainer { .. } => Error::NotFound(e.to_string()),
            NamespaceError::NotRunning { .. } | NamespaceError::InitGone { .. } => {
                Error::FailedPrecondition(e.to_string())
            }
            NamespaceError::Store { .. } => Error::Internal(e.to_string()),
        }
    }
}

/// `opts` resolved against the store, or None when none was given (the
/// spec's own namespaces stay).
pub fn resolve(
    opts: &NamespaceOptions,
    store: &Store,
) -> Result<Option<SpecNamespaces>, NamespaceError> {
    if !opts.any() {
        return Ok(None);
    }
    let mut out = SpecNamespaces {
        shared_uts: opts.shares_uts(),
        ..Default::default()
    };
    for (kind, mode) in opts.given() {
        let spec = match mode {
            NsMode::Private => NsSpec::New,
            NsMode::Host => NsSpec::Host,
            NsMode::Container(id) => NsSpec::Path(joined(kind, id, store)?),
        };
        out.entries.push((kind, spec));
    }
    Ok(Some(out))
}

/// Container `id`'s namespace of `kind`, if it runs (created and paused
/// count: their init is there).
fn joined(kind: NsKind, id: &str, store: &Store) -> Result<PathBuf, NamespaceError> {
    let k = kind.name();
    let none = || NamespaceError::NoContainer {
        kind: k,
        id: crate::daemon::brief(id).into(),
    };
    crate::ids::check_lookup(id).map_err(|_| none())?;
    let rec = store
        .get(id)
        .map_err(|e| NamespaceError::Store {
            kind: k,
            why: e.to_string(),
        })?
        .ok_or_else(none)?;
    if !matches!(
        rec.status,
        Status::Created | Status::Running | Status::Paused
    ) {
        return Err(NamespaceError::NotRunning {
            kind: k,
            id: id.into(),
            status: rec.status,
        });
    }
    // The recorded start time tells its init from a process that got the
    // pid after it died (the status may lag an exit by a moment).
    if rec.pid == 0 || crate::init_calls::process_start_time(rec.pid) != Some(rec.pid_start) {
        return Err(NamespaceError::InitGone {
            kind: k,
            id: id.into(),
            pid: rec.pid,
        });
    }
    Ok(PathBuf::from(format!("/proc/{}/ns/{k}", rec.pid)))
}
