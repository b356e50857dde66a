//! A container's storage options → the mounts its spec gets: bind sources
//! checked (absolute, existing, symlinks resolved now so the spec names the
//! real directory), named volumes found or made, tmpfs options completed.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::options::storage::{DeviceRequest, MountRequest, Source, StorageOptions};
use crate::store::Store;

/// One mount for the spec.
#[derive(Debug, Clone, PartialEq)]
pub struct SpecMount {
    pub dest: String,
    /// "bind" or "tmpfs".
    pub typ: &'static str,
    pub source: PathBuf,
    pub options: Vec<String>,
}

/// One host device for the spec (linux.devices + an allow rule).
#[derive(Debug, Clone, PartialEq)]
pub struct SpecDevice {
    pub path: String,
    /// 'c' or 'b'.
    pub typ: char,
    pub major: i64,
    pub minor: i64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    /// "rwm" or a subset.
    pub access: String,
}

/// What a create's storage options became.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SpecMounts {
    /// Parents before children (sorted by depth).
    pub mounts: Vec<SpecMount>,
    /// Volumes to fill from the image when empty: (destination, host dir).
    pub copy_up: Vec<(String, PathBuf)>,
    pub read_only: bool,
    pub shm_size: Option<u64>,
    pub devices: Vec<SpecDevice>,
    /// Volumes this create made (on first use): undone if it fails.
    pub made: Vec<String>,
}

/// podman's defaults for a `--tmpfs` (the image's content copied in).
const TMPFS_DEFAULTS: &[&str] = &["rw", "noexec", "nosuid", "nodev", "tmpcopyup"];

/// The directories `--read-only` leaves writable (as podman's
/// --read-only-tmpfs), unless a mount of the caller's is there.
pub const READ_ONLY_TMPFS: &[&str] = &["/run", "/tmp", "/var/tmp"];

/// Plans `opts`'s mounts; on an error, the volumes it made are removed.
pub fn plan(store: &Store, dir: &Path, opts: &StorageOptions) -> Result<SpecMounts> {
    let mut out = SpecMounts {
        read_only: opts.read_only,
        shm_size: opts.shm_size,
        ..Default::default()
    };
    for d in &opts.devices {
        out.devices.push(device(d)?);
    }
    for m in &opts.mounts {
        if let Err(e) = plan_one(store, dir, m, &mut out) {
            // This create's record names them: only it uses them.
            for name in &out.made {
                let _ = super::remove_unchecked(store, dir, name);
            }
            return Err(e);
        }
    }
    if opts.read_only {
        for d in READ_ONLY_TMPFS {
            if !out.mounts.iter().any(|m| m.dest == *d) {
                out.mounts.push(SpecMount {
                    dest: (*d).into(),
                    typ: "tmpfs",
                    source: "tmpfs".into(),
                    options: ["rw", "nosuid", "nodev", "tmpcopyup"]
                        .map(String::from)
                        .to_vec(),
                });
            }
        }
    }
    out.mounts
        .sort_by_key(|m| Path::new(&m.dest).components().count());
    Ok(out)
}

/// Removes the volumes a failed create made.
pub fn undo(store: &Store, dir: &Path, made: &[String]) {
    for name in made {
        if let Err(e) = super::remove(store, dir, name) {
            tracing::warn!(volume = %name, "undoing a volume made on first use: {e}");
        }
    }
}

/// `--device`'s host node, looked at (symlinks such as /dev/disk/by-id/…
/// resolved): a character or block device, or InvalidArgument.
fn device(d: &DeviceRequest) -> Result<SpecDevice> {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    let bad = |why: String| Error::InvalidArgument(format!("device {}: {why}", d.host));
    let md = std::fs::metadata(&d.host).map_err(|e| bad(berth_init::paths::errno_text(&e)))?;
    let typ = match md.file_type() {
        t if t.is_char_device() => 'c',
        t if t.is_block_device() => 'b',
        _ => return Err(bad("not a character or block device".into())),
    };
    let rdev = md.rdev();
    Ok(SpecDevice {
        path: d.path.clone(),
        typ,
        major: libc::major(rdev) as i64,
        minor: libc::minor(rdev) as i64,
        mode: md.mode() & 0o777,
        uid: md.uid(),
        gid: md.gid(),
        access: d.access.clone(),
    })
}

fn plan_one(store: &Store, dir: &Path, m: &MountRequest, out: &mut SpecMounts) -> Result<()> {
    let mut options = Vec::new();
    let (typ, source) = match &m.source {
        Source::Bind(src) => {
            let real = std::fs::canonicalize(src).map_err(|e| {
                Error::InvalidArgument(format!(
                    "bind source {}: {} (it must exist on the host)",
                    src.display(),
                    berth_init::paths::errno_text(&e)
                ))
            })?;
            options.push("rbind".to_string());
            ("bind", real)
        }
        Source::Volume(name) => {
            let rec = match store.volume(name)? {
                Some(r) => r,
                None => {
                    let r = super::create(store, dir, name, Default::default(), true)?;
                    out.made.push(name.clone());
                    r
                }
            };
            // A record whose directory went missing (a crash before it was
            // made, a hand's rm): made again, empty.
            let data = super::make_dir(dir, &rec.name)?;
            if !m.nocopy {
                out.copy_up.push((m.dest.clone(), data.clone()));
            }
            options.push("rbind".to_string());
            ("bind", data)
        }
        Source::Tmpfs => {
            options.extend(TMPFS_DEFAULTS.iter().map(|s| s.to_string()));
            ("tmpfs", PathBuf::from("tmpfs"))
        }
    };
    options.extend(m.options.iter().cloned());
    if m.readonly {
        options.push("ro".into());
    }
    out.mounts.push(SpecMount {
        dest: m.dest.clone(),
        typ,
        source,
        options,
    });
    Ok(())
}
