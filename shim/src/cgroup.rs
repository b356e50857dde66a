//! Where the shim itself goes: its own scope (--shim-scope) or a sub-cgroup
//! of berthd's delegated monitors scope (--monitor-cgroup).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use berth_proto::FailureKind;

use crate::setup::Failure;

/// Moves the shim into `berth-shim-<id>.scope` (podman's layout: the monitor
/// in its own small scope, never in the daemon's service cgroup).
pub fn place_self(id: &str, exec_id: Option<&str>) -> Result<(), Failure> {
    let path = berth_init::cgroups::naming::shim_scope_path(id, exec_id);
    let mut mgr = berth_init::cgroups::manager(true, id, Some(std::path::Path::new(&path)))
        .map_err(|e| Failure::from(e.to_string()))?;
    mgr.apply(std::process::id() as i32, None)
        .map_err(|e| Failure {
            // Its scope's name is taken: as for the container's own scope.
            kind: match e {
                berth_init::cgroups::CgroupError::UnitExists { .. } => FailureKind::AlreadyExists,
                _ => FailureKind::Internal,
            },
            msg: format!("placing the shim: {e}"),
        })
}

/// `PARENT/<id>`, made if missing (the container's monitor and its execs'
/// shims share it), and opened for clone3: (path, directory).
pub fn monitor_cgroup_dir(parent: &Path, id: &str) -> Result<(PathBuf, File), String> {
    // The id names a directory: one path component, never "..".
    berth_init::error::validate_id(id).map_err(|e| format!("--id: {e}"))?;
    let dir = parent.join(id);
    let err = |e: std::io::Error| format!("the shim's cgroup {}: {e}", dir.display());
    match std::fs::create_dir(&dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(err(e)),
        _ => {}
    }
    open_dir(&dir).map(|f| (dir.clone(), f)).map_err(err)
}

/// A cgroup directory opened for clone3's CLONE_INTO_CGROUP.
pub fn open_dir(dir: &Path) -> std::io::Result<File> {
    File::options()
        .read(true)
        .custom_flags(nix::libc::O_DIRECTORY)
        .open(dir)
}

/// Moves the shim into `PARENT/<id>` (made if missing; the container's
/// monitor and its execs' shims share it). The id was validated by the
/// create or exec above, so it is one path component.
pub fn join_monitor_cgroup(parent: &Path, id: &str) -> Result<(), Failure> {
    let dir = parent.join(id);
    let pid = std::process::id().to_string();
    let join = || -> std::io::Result<()> {
        match std::fs::create_dir(&dir) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(e),
            _ => {}
        }
        std::fs::write(dir.join("cgroup.procs"), &pid)
    };
    // Once more if berthd's start-up sweep removed the directory (empty)
    // between our mkdir and our write.
    join()
        .or_else(|_| join())
        .map_err(|e| format!("placing the shim in {}: {e}", dir.display()).into())
}
