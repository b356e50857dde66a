//! Writing what the shim leaves in the container's state dir for berthd: who
//! it is (berth_proto::ShimRecord, written by berth-shim) and, at the end,
//! how the container exited (berth_proto::ExitRecord, written here). Both
//! atomically: write a temporary file, fsync, rename, fsync the directory.

use std::fs::{self, File};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::monitor::ExitStatus;

pub use berth_proto::record_names as names;
use berth_proto::ExitRecord;

pub fn write_atomic<T: serde::Serialize>(dir: &Path, name: &str, value: &T) -> Result<(), String> {
    let tmp = dir.join(format!(".{name}.tmp"));
    let err = |what: &str, e: std::io::Error| format!("{what} {}: {e}", dir.join(name).display());
    let json = serde_json::to_string(value).map_err(|e| err("encoding", e.into()))?;
    let mut f = File::create(&tmp).map_err(|e| err("creating", e))?;
    f.write_all(format!("{json}\n").as_bytes())
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

/// Writes the exit record; returns it as written.
pub fn write_exit_record(
    dir: &Path,
    name: &str,
    init_pid: i32,
    status: &ExitStatus,
    oom_killed: bool,
) -> Result<ExitRecord, String> {
    let (code, signal) = match status {
        ExitStatus::Code(c) => (*c, 0),
        ExitStatus::Signal(s) => (128 + *s, *s),
    };
    let record = ExitRecord {
        // A pid is positive: unsigned_abs only changes the type.
        pid: init_pid.unsigned_abs(),
        exit_code: code,
        exit_signal: signal,
        exited_at_us: now_us(),
        oom_killed,
    };
    write_atomic(dir, name, &record).map(|()| record)
}
