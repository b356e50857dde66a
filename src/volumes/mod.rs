//! Named volumes (driver `local`): a record in the store's `volumes`
//! database and a directory `<state>/volumes/<name>/_data` (docker's
//! layout). Made by CreateVolume or on first use by a container's
//! `-v name:/path`; in use while a container record names it; they outlive
//! their containers, berthd restarts and package upgrades.
//!
//! A container's storage options become [`SpecMounts`] here (plan.rs):
//! bind sources checked, volumes made, what the spec gets.

mod copy;
pub mod plan;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use copy::copy_up;
pub use plan::{plan, SpecMounts};

use crate::daemon::now_us;
use crate::error::{Error, Result};
use crate::options::storage::check_volume_name;
use crate::store::Store;

pub const DRIVER: &str = "local";

#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct VolumeRecord {
    pub name: String,
    pub driver: String,
    /// The host directory mounted (`<dir>/<name>/_data`).
    pub mountpoint: String,
    pub labels: BTreeMap<String, String>,
    /// Microseconds since the epoch.
    pub created_at: u64,
    /// Made by a container's first use rather than by CreateVolume.
    #[serde(default)]
    pub made_on_first_use: bool,
}

/// `<dir>/<name>/_data`.
pub fn data_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name).join("_data")
}

/// Makes `<dir>/<name>/_data` (root's, 0755; `<dir>` 0700: the volumes'
/// content is reached through the containers, not by host users).
fn make_dir(dir: &Path, name: &str) -> Result<PathBuf> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    let io = |what: &str, p: &Path, e: std::io::Error| {
        Error::Internal(format!("volume {name}: {what} {}: {e}", p.display()))
    };
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io("mkdir", dir, e))?;
    let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    let data = data_dir(dir, name);
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(&data)
        .map_err(|e| io("mkdir", &data, e))?;
    Ok(data)
}

/// Creates volume `name` (record, then directory). `AlreadyExists` if the
/// name is taken.
pub fn create(
    store: &Store,
    dir: &Path,
    name: &str,
    labels: BTreeMap<String, String>,
    on_first_use: bool,
) -> Result<VolumeRecord> {
    check_volume_name(name).map_err(|e| Error::InvalidArgument(e.to_string()))?;
    let rec = VolumeRecord {
        name: name.into(),
        driver: DRIVER.into(),
        mountpoint: data_dir(dir, name).to_string_lossy().into_owned(),
        labels,
        created_at: now_us(),
        made_on_first_use: on_first_use,
    };
    store.insert_volume_blocking(&rec).map_err(|e| match e {
        crate::store::StoreError::Exists(n) => {
            Error::AlreadyExists(format!("volume {n:?} already exists"))
        }
        other => other.into(),
    })?;
    if let Err(e) = make_dir(dir, name) {
        let _ = store.remove_volume_blocking(name);
        return Err(e);
    }
    Ok(rec)
}

/// Volume `name`, or NotFound.
pub fn find(store: &Store, name: &str) -> Result<VolumeRecord> {
    if check_volume_name(name).is_err() {
        return Err(not_found(name));
    }
    store.volume(name)?.ok_or_else(|| not_found(name))
}

fn not_found(name: &str) -> Error {
    Error::NotFound(format!(
        "no volume {:?} (berthctl volume ls)",
        crate::daemon::brief(name)
    ))
}

/// The containers whose records name volume `name`.
pub fn users(store: &Store, name: &str) -> Result<Vec<String>> {
    Ok(store
        .list()?
        .into_iter()
        .filter(|r| r.volumes.iter().any(|v| v == name))
        .map(|r| r.id)
        .collect())
}

/// Removes volume `name` (directory, then record): InUse while a container
/// names it.
pub fn remove(store: &Store, dir: &Path, name: &str) -> Result<()> {
    find(store, name)?;
    let users = users(store, name)?;
    if !users.is_empty() {
        return Err(Error::InUse(format!(
            "volume {name:?} is in use by {} (remove them first, or force)",
            users.join(", ")
        )));
    }
    remove_unchecked(store, dir, name)
}

/// Removes volume `name` whoever names it: a create undoing the volume it
/// made (its own record still names it).
pub fn remove_unchecked(store: &Store, dir: &Path, name: &str) -> Result<()> {
    match std::fs::remove_dir_all(dir.join(name)) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(Error::Internal(format!(
                "volume {name}: removing {}: {e}",
                dir.join(name).display()
            )))
        }
        _ => {}
    }
    store.remove_volume_blocking(name)?;
    Ok(())
}
