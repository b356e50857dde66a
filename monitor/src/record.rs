//! What the shim leaves in the container's state dir for berthd: who it is
//! (pid + start time, so a restarted berthd tells its shim from a reused pid;
//! written by berth-shim) and, at the end, how the container exited (written
//! here). Both written atomically: write a temporary file, fsync, rename,
//! fsync the directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::monitor::ExitStatus;

/// The records of the container's init; an exec'd process's carry its exec id:
/// `exec-<exec id>.shim.json`, `exec-<exec id>.exit.json`.
pub fn names(exec_id: Option<&str>) -> (String, String) {
    match exec_id {
        None => ("shim.json".into(), "exit.json".into()),
        Some(e) => (format!("exec-{e}.shim.json"), format!("exec-{e}.exit.json")),
    }
}

pub fn write_atomic(dir: &Path, name: &str, value: &serde_json::Value) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.join(name).display());
    let mut f = File::create(&tmp).map_err(|e| err("creating", e))?;
    f.write_all(format!("{value}\n").as_bytes())
        .and_then(|_| f.sync_all())
        .map_err(|e| err("writing", e))?;
    fs::rename(&tmp, dir.join(name)).map_err(|e| err("renaming", e))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| err("syncing the directory of", e))
}

fn now_us() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as u64)
        .unwrap_or(0)
}

pub fn write_exit_record(
    dir: &Path,
    name: &str,
    init_pid: i32,
    status: &ExitStatus,
) -> Result<(), String> {
    let (code, signal) = match status {
        ExitStatus::Code(c) => (*c, 0),
        ExitStatus::Signal(s) => (128 + *s, *s),
    };
    write_atomic(
        dir,
        name,
        &serde_json::json!({
            "pid": init_pid,
            "exit_code": code,
            "exit_signal": signal,
            "exited_at_us": now_us(),
        }),
    )
}
