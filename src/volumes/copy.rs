//! docker's first use of an empty volume: what the image has at the mount's
//! destination is copied in, with owners and modes, and the volume's
//! directory takes the owner and mode of the image's (so a volume on
//! /var/lib/postgresql belongs to postgres, as the image meant).

use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::error::{Error, Result};

use super::SpecMounts;

/// Fills each empty volume of `mounts` from `rootfs` (the container's,
/// mounted, not yet running). The image's path is resolved inside the
/// rootfs by the kernel (RESOLVE_IN_ROOT): a symlink in the image cannot
/// point the copy at the host.
pub fn copy_up(rootfs: &Path, mounts: &SpecMounts) -> Result<()> {
    for (dest, data) in &mounts.copy_up {
        let empty = std::fs::read_dir(data)
            .map(|mut d| d.next().is_none())
            .unwrap_or(false);
        if !empty {
            continue;
        }
        let from = match berth_init::in_root::open_existing_dir(rootfs, Path::new(dest)) {
            Ok(t) => t,
            // Nothing (or no directory) there in the image: nothing to copy.
            Err(_) => continue,
        };
        let fail = |what: &str, e: String| {
            Error::Internal(format!(
                "copying the image's {dest} into its volume ({what}): {e}"
            ))
        };
        let src = from.proc_path();
        let md = std::fs::metadata(&src).map_err(|e| fail("stat", e.to_string()))?;
        berth_init::copyup::copy_tree(&src, data).map_err(|e| fail("copy", e.to_string()))?;
        chown(data, Some(md.uid()), Some(md.gid())).map_err(|e| fail("chown", e.to_string()))?;
        std::fs::set_permissions(data, std::fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(|e| fail("chmod", e.to_string()))?;
    }
    Ok(())
}
