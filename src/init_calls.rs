//! berthd's one door to berth-init: no other module calls it.
//!
//! berth-init is a blocking library. Its container verbs make system-bus
//! round trips to systemd (GetUnit, FreezerState, KillUnit, StopUnit and the
//! job waits) and file I/O on the state dirs; on an executor thread each one
//! stalls every D-Bus call queued behind it (2 cores: 2 executor threads).
//! So each verb here runs on tokio's blocking pool
//! (tests/berthd_responsive.rs measures the difference). The few calls left
//! inline are marked, with the reason they cannot block.

use std::path::Path;

use nix::sys::signal::Signal;

pub use berth_init::container::FIFO;
pub use berth_init::error::{validate_id, Error as InitError};
/// The OCI spec's defaults and loader, for bundle/: plain file work, which
/// its callers already run on the blocking pool (bundle/write.rs).
pub use berth_init::spec;

use crate::error::{Error, Result};

/// Runs the berth-init call `f` on the blocking pool; its error becomes the
/// core's (by kind), a panic in it an internal error.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, InitError> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(format!("berth-init call: {e}")))?
        .map_err(Error::from)
}

/// Connects the system bus berth-init's systemd driver shares and, if
/// `private`, systemd's private socket, which scope starts and stops (every
/// create and delete) then use. Inline: it runs once at start, before berthd
/// serves anything.
pub fn connect_systemd(private: bool) {
    use berth_init::cgroups::systemd;
    // A failure is retried at the first use, so it is no failure here.
    let _ = systemd::system_bus();
    if private {
        match systemd::use_private_bus() {
            Ok(()) => return,
            Err(e) => tracing::warn!("{e}; scopes start and stop over the system bus meanwhile"),
        }
    }
    // Over the system bus, scope starts and stops wait for their jobs
    // without an AddMatch/RemoveMatch each. Without it they still work,
    // paying those. (The private socket needs no match: systemd sends it
    // every signal.)
    if let Err(e) = systemd::hold_job_match() {
        tracing::warn!("holding the JobRemoved match: {e}");
    }
}

/// Marks every fd from `first` on close-on-exec. Inline: one syscall.
pub fn close_range_cloexec(first: u32) -> nix::Result<()> {
    berth_init::child::close_range_cloexec(first)
}

/// The start time of process `pid` (None: no such process). Inline: a read
/// of /proc/<pid>/stat, which the kernel answers from memory.
pub fn process_start_time(pid: u32) -> Option<u64> {
    berth_init::container::process_start_time(pid as i32)
}

/// The scope unit of the shim of container `id` (`exec` None: its init's
/// shim). Inline: it only builds a name.
pub fn shim_scope_unit(id: &str, exec: Option<&str>) -> Option<String> {
    berth_init::cgroups::naming::shim_scope_unit(id, exec).ok()
}

/// Checks that `bundle` holds a loadable config.json (it reads the file);
/// true when its annotation asks for the default seccomp profile.
pub async fn check_bundle(bundle: &Path) -> Result<bool> {
    let bundle = bundle.to_path_buf();
    tokio::task::spawn_blocking(move || {
        berth_init::spec::load(&bundle)
            .map(|b| crate::seccomp_profile::wants_runtime_default(&b.spec))
    })
    .await
    .map_err(|e| Error::Internal(format!("loading the bundle: {e}")))?
    .map_err(|e| Error::InvalidArgument(e.to_string()))
}

/// Lets the container's process run (opens its exec FIFO).
pub async fn start(root: &Path, id: &str) -> Result<()> {
    let (root, id) = (root.to_path_buf(), id.to_string());
    blocking(move || berth_init::container::start(&root, &id).map(drop)).await
}

/// Signals the container's init, or (`all`) every process of its scope.
pub async fn kill(root: &Path, id: &str, sig: Signal, all: bool) -> Result<()> {
    let (root, id) = (root.to_path_buf(), id.to_string());
    blocking(move || berth_init::container::kill(&root, &id, sig, all)).await
}

/// Freezes (`pause`) or thaws the container's scope.
pub async fn set_paused(root: &Path, id: &str, pause: bool) -> Result<()> {
    let (root, id) = (root.to_path_buf(), id.to_string());
    blocking(move || match pause {
        true => berth_init::container::pause(&root, &id),
        false => berth_init::container::resume(&root, &id),
    })
    .await
}

/// Sets new resource limits on the container's scope (only those given).
pub async fn update(
    root: &Path,
    id: &str,
    resources: oci_spec::runtime::LinuxResources,
) -> Result<()> {
    let (root, id) = (root.to_path_buf(), id.to_string());
    blocking(move || berth_init::container::update(&root, &id, &resources)).await
}

/// Removes the container (forced: killed first if it runs), its scope and
/// the scopes `also`. A container berth-init does not know is no error: it
/// is as gone as a delete would leave it.
pub async fn delete(root: &Path, id: &str, also: Vec<String>) -> Result<()> {
    let (root, id) = (root.to_path_buf(), id.to_string());
    blocking(
        move || match berth_init::container::delete_with_scopes(&root, &id, true, &also) {
            Ok(_) | Err(InitError::NotFound(_)) => Ok(()),
            Err(e) => Err(e),
        },
    )
    .await
}

/// Makes transient scope `unit` (berth-init's cgroupsPath form `path`,
/// `slice:prefix:name`) around process `pid`, delegated, and waits for it.
pub async fn make_scope(unit: &str, path: &str, pid: u32) -> Result<()> {
    let (unit, path) = (unit.to_string(), path.to_string());
    blocking(move || {
        let mut mgr = berth_init::cgroups::manager(true, &unit, Some(Path::new(&path)))?;
        mgr.apply(pid as i32, None)?;
        Ok(())
    })
    .await
}

/// Stops and resets container `id`'s scope if systemd has it and it is
/// this container's (its Description, as the systemd driver sets it); a
/// unit of someone else's under that name is left alone. The name as the
/// driver makes it (`berth-<escaped id>.scope`, whatever the slice: berthd's
/// cgroupsPaths are `<slice>:berth:<id>`). Failures are logged.
pub async fn destroy_scope_of(id: &str) {
    let id = id.to_string();
    let done = blocking(move || {
        let (_, unit) = berth_init::cgroups::naming::unit_for(&id, None)?;
        Ok(berth_init::cgroups::systemd::destroy_scope_of(&unit, &id)?)
    })
    .await;
    if let Err(e) = done {
        tracing::warn!("removing a half-made scope: {e}");
    }
}
