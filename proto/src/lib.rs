//! What crosses a process boundary between berth's own processes, as types
//! both sides compile against: the report `berth-shim` prints for berthd,
//! the records the shim and the monitor leave in a container's state dir
//! (shim.json, exit.json, and an exec's `exec-ID.` pair), and why a
//! container's init failed before execve. docs/shim.md shows them on the wire.
//!
//! The JSON is what earlier versions wrote (field names unchanged), so
//! records on disk from before these types still read. Reading is strict: a
//! missing field or a foreign value is a [`RecordError`], never a default.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// How a failure is sorted without reading its text: berth-init's
/// `Error::kind`, the shim's report, berthd's D-Bus error names
/// (io.berth.Berth1.Error.<kind>).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum FailureKind {
    InvalidArgument,
    AlreadyExists,
    NotFound,
    NotExecutable,
    FailedPrecondition,
    ControllerUnavailable,
    PermissionDenied,
    /// Anything else; also a report that names no kind (a shim that died
    /// before it could say).
    #[default]
    Internal,
}

/// The one line `berth-shim` prints for its starter, then exits 0 (Created)
/// or 1 (Failed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ShimReport {
    /// The container (or exec'd process) exists; for a container, its init
    /// is blocked on the exec FIFO.
    Created {
        init_pid: u32,
        shim_pid: u32,
        /// /proc start times (0: not said), read by the shim: the starter
        /// reading the shim's itself would wait while the shim execs into
        /// berth-monitor (the kernel holds the exec's lock on its stat).
        /// An exec's shim leaves `init_start` 0.
        #[serde(default)]
        init_start: u64,
        #[serde(default)]
        shim_start: u64,
    },
    /// Nothing was left behind.
    Failed {
        error: String,
        #[serde(default)]
        kind: FailureKind,
    },
}

impl ShimReport {
    /// The report as its one line (newline included).
    pub fn to_line(&self) -> String {
        // A derived Serialize of ints and strings cannot fail; should it, the
        // starter still gets a report it can parse, as a failure.
        let json = serde_json::to_string(self).unwrap_or_else(|e| {
            format!(r#"{{"error":"encoding the shim's report: {e}","kind":"Internal"}}"#)
        });
        format!("{json}\n")
    }

    /// The report in `line`; anything else is [`RecordError::Report`],
    /// which names what was said.
    pub fn parse(line: &str) -> Result<ShimReport, RecordError> {
        serde_json::from_str(line.trim()).map_err(|source| RecordError::Report {
            line: line.to_owned(),
            source,
        })
    }
}

/// `shim.json`: who the shim is (its pid and /proc start time, so a restarted
/// berthd tells its shim from a process that reused the pid) and the init it
/// watches. Written by berth-shim before it reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShimRecord {
    pub pid: u32,
    pub start_time: u64,
    pub init_pid: u32,
}

/// `exit.json`: how the init (or exec'd process) ended. Written by
/// berth-monitor as its last act, then the shim is gone.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExitRecord {
    pub pid: u32,
    /// The exit status, or 128+N for signal N (a shell's `$?`).
    pub exit_code: i32,
    /// N if a signal ended it, else 0.
    pub exit_signal: i32,
    pub exited_at_us: u64,
    /// The kernel's OOM killer struck in the container's cgroup while it
    /// ran (its memory.events oom_kill grew). Older records lack it: false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub oom_killed: bool,
}

/// Why a container's init, or an exec's process, stopped before execve: sent
/// from the child to its creator (sync channel, exec error pipe). A program
/// that is not there is its own case, as podman makes it one (exit 127).
#[derive(Debug, PartialEq, Serialize, Deserialize)]
pub enum ChildFailure {
    /// A setup step failed; the message says which and why.
    Setup(String),
    /// `process.args[0]` is missing or not executable in the container.
    NotExecutable(String),
}

impl From<String> for ChildFailure {
    fn from(msg: String) -> Self {
        ChildFailure::Setup(msg)
    }
}

impl From<&str> for ChildFailure {
    fn from(msg: &str) -> Self {
        ChildFailure::Setup(msg.into())
    }
}

/// The names of the records in a container's state dir: the init's, or an
/// exec'd process's (`exec-<exec id>.shim.json`, `exec-<exec id>.exit.json`).
pub fn record_names(exec_id: Option<&str>) -> (String, String) {
    match exec_id {
        None => ("shim.json".into(), "exit.json".into()),
        Some(e) => (format!("exec-{e}.shim.json"), format!("exec-{e}.exit.json")),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// Not written (yet, or ever: a shim that died without an exit record).
    #[error("{} is missing", .path.display())]
    Missing { path: PathBuf },
    #[error("reading {}: {source}", .path.display())]
    Unreadable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{} is malformed: {source}", .path.display())]
    Malformed {
        path: PathBuf,
        source: serde_json::Error,
    },
    #[error("the shim said {line:?}: {source}")]
    Report {
        line: String,
        source: serde_json::Error,
    },
}

/// Reads record `path` (a [`ShimRecord`], an [`ExitRecord`]).
pub fn read<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, RecordError> {
    let text = std::fs::read_to_string(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => RecordError::Missing {
            path: path.to_owned(),
        },
        _ => RecordError::Unreadable {
            path: path.to_owned(),
            source,
        },
    })?;
    serde_json::from_str(&text).map_err(|source| RecordError::Malformed {
        path: path.to_owned(),
        source,
    })
}

#[cfg(test)]
mod tests;
