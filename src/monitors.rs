//! Where the monitors live: one systemd unit for all of them.
//!
//! A container is one unit, its scope `berth-<id>.scope`. Its monitor (the
//! shim after its re-exec) and the shims of its execs are in a sub-cgroup
//! `<id>` of one delegated scope, `berthd-monitors.scope` in berth.slice,
//! that berthd makes once (with a keeper process, `berth-monitor --keep`, so
//! the scope never empties and goes). A shim makes its sub-cgroup with mkdir
//! and is born in it (clone3 CLONE_INTO_CGROUP; where the kernel refuses,
//! it writes cgroup.procs): no systemd call, no migration, no second unit
//! per container (systemd walks every sibling unit of a slice at each
//! start and stop; 2000 units for 1000 containers cost it twice as much).
//!
//! Out of berthd.service (a `systemctl restart berthd` or a package upgrade
//! leaves monitors and containers running) and out of the container's scope
//! (its stop does not take the monitor that records the exit). The name
//! `berthd-…` cannot be a container's (`berth-<id>.scope`).
//!
//! A sub-cgroup goes with its container's delete (once its last process
//! has exited: release); one left behind by a crash goes at berthd's next
//! start.

use std::io::ErrorKind;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::init_calls;

/// The scope's unit name, and how berth-init's systemd driver names it
/// (`slice:prefix:name`).
pub const UNIT: &str = "berthd-monitors.scope";
pub const CGROUPS_PATH: &str = "berth.slice:berthd:monitors";

/// The scope's cgroup: systemd maps slice `a.slice` to `/a.slice/`.
pub fn dir() -> PathBuf {
    PathBuf::from("/sys/fs/cgroup/berth.slice").join(UNIT)
}

/// Made one at a time: two creates finding the scope missing must not both
/// start it (the second would fail with UnitExists and kill its keeper).
static MAKING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The scope's cgroup, made now if it is not there (berthd's first create
/// on this boot, or after the scope was stopped by hand). The common case is
/// one stat.
pub async fn ensure(monitor: &Path) -> Result<PathBuf> {
    let dir = dir();
    if dir.is_dir() {
        return Ok(dir);
    }
    let _one = MAKING.lock().await;
    if dir.is_dir() {
        return Ok(dir);
    }
    // The keeper: a process for the scope to adopt (a scope is made around
    // processes) that stays, so the scope does not stop when its last
    // monitor exits. Its own session, so no signal of berthd's reaches it.
    let mut keeper = std::process::Command::new(monitor)
        .arg("--keep")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|e| Error::Internal(format!("running {} --keep: {e}", monitor.display())))?;
    let pid = keeper.id();
    // Reaped by berthd while it lives (after a restart, by PID 1): a thread
    // blocked in waitpid, not tokio's child watch, which would hold a pidfd
    // open in berthd for as long as the keeper lives.
    std::thread::spawn(move || {
        let _ = keeper.wait();
    });
    let made = init_calls::make_scope(UNIT, CGROUPS_PATH, pid).await;
    if let Err(e) = made {
        // SAFETY: kill with integer arguments; the pid is our unreaped child.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
        return Err(e);
    }
    tracing::info!(unit = UNIT, "made the monitors' scope");
    Ok(dir)
}

/// Removes container `id`'s sub-cgroup once its monitors are gone. One still
/// in use (a monitor or an exec's shim recording its exit, a moment behind
/// the container's stop) is removed by a task once empty; what outlasts the
/// task goes at the next start's sweep. A new container under the id meanwhile
/// is safe either way: rmdir fails while its monitor is in the cgroup, and a
/// shim whose fresh cgroup went before its clone3 falls back to fork and
/// mkdir + cgroup.procs (berth-shim).
///
/// On the blocking pool: rmdir takes the kernel's cgroup_mutex, which a
/// cgroup migration holds for a whole RCU grace period (milliseconds after
/// a quiet spell), and an executor thread must not wait for that.
///
/// Waits up to `wait` for a sub-cgroup in use to empty before leaving it
/// to a task: a failed create's shim, forked by the exec server, exits
/// right after its failure report, and an exec's spare shim as the init
/// does; the call's answer should come with nothing of them left.
pub async fn release_within(id: &str, wait: std::time::Duration) {
    // validate_id: never a path of our making from a name with '/' or "..".
    if init_calls::validate_id(id).is_err() {
        return;
    }
    let sub = dir().join(id);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        match tokio::fs::remove_dir(&sub).await {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                if tokio::time::Instant::now() >= deadline {
                    tokio::spawn(remove_when_empty(sub));
                    return;
                }
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
            _ => return,
        }
    }
}

/// How long a sub-cgroup in use at delete is waited for: its processes are
/// exiting (the container's scope is gone), so milliseconds; a minute is
/// plenty.
const GONE_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

async fn remove_when_empty(sub: PathBuf) {
    let deadline = tokio::time::Instant::now() + GONE_WAIT;
    let mut pause = std::time::Duration::from_millis(5);
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(pause).await;
        match tokio::fs::remove_dir(&sub).await {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            _ => return,
        }
        pause = (pause * 2).min(std::time::Duration::from_secs(2));
    }
    tracing::warn!("{} still in use: left for the next start", sub.display());
}

/// At start: removes every empty sub-cgroup (a crash between a monitor's
/// exit and its container's delete, or inside a create). rmdir of one in
/// use fails (EBUSY), which is the check. Returns how many went.
pub fn sweep() -> usize {
    let entries = match std::fs::read_dir(dir()) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return 0,
        Err(e) => {
            tracing::warn!("reading {}: {e}", dir().display());
            return 0;
        }
    };
    entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .filter(|e| std::fs::remove_dir(e.path()).is_ok())
        .count()
}

/// The scopes of `id`'s shims made by a berthd before this layout
/// (`berth-shim-<id>[-<exec>].scope`), where they still exist: their delete
/// stops them. Checked by their cgroup so that a container of this layout
/// costs no StopUnit for scopes it never had.
pub fn legacy_scopes<'a>(id: &str, execs: impl Iterator<Item = &'a String>) -> Vec<String> {
    let slice = Path::new("/sys/fs/cgroup/berth.slice");
    std::iter::once(None)
        .chain(execs.map(|e| Some(e.as_str())))
        .filter_map(|e| init_calls::shim_scope_unit(id, e))
        .filter(|unit| slice.join(unit).exists())
        .collect()
}
