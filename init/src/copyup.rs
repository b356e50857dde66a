//! `tmpcopyup`: a tmpfs mounted over a directory of the image starts with
//! that directory's content (podman adds it to every `--tmpfs` and to the
//! tmpfs mounts of `--read-only`), with its owners and modes.

use std::fs;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::{chown, lchown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::MsFlags;

use crate::rootfs::{do_mount, io_err, Result};

/// Mounts a tmpfs on `target` and copies what `target` held into it. The
/// directory underneath is read through an fd opened before the mount, so
/// it stays reachable once covered.
pub fn mount_tmpfs_copyup(target: &Path, flags: MsFlags, data: Option<&str>) -> Result<()> {
    let below = fs::File::open(target).map_err(io_err("open", target))?;
    let md = below.metadata().map_err(io_err("stat", target))?;
    let below = OwnedFd::from(below);
    // Written read-write, then remounted with the entry's own flags.
    do_mount(
        Some(Path::new("tmpfs")),
        target,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        data,
    )?;
    let from = format!("/proc/self/fd/{}", below.as_raw_fd());
    copy_tree(Path::new(&from), target)?;
    chown(target, Some(md.uid()), Some(md.gid())).map_err(io_err("chown", target))?;
    fs::set_permissions(target, fs::Permissions::from_mode(md.mode() & 0o7777))
        .map_err(io_err("chmod", target))?;
    if flags.contains(MsFlags::MS_RDONLY) {
        do_mount(None, target, None, flags | MsFlags::MS_REMOUNT, data)?;
    }
    Ok(())
}

/// Copies the content of directory `from` into `to`: directories, regular
/// files and symlinks with owner and mode; other kinds (device nodes,
/// sockets) are left out, as a tmpfs of the container's own should not
/// gain device nodes from an image.
fn copy_tree(from: &Path, to: &Path) -> Result<()> {
    for entry in fs::read_dir(from).map_err(io_err("read dir", from))? {
        let entry = entry.map_err(io_err("read dir", from))?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        let md = fs::symlink_metadata(&src).map_err(io_err("stat", &src))?;
        let kind = md.file_type();
        if kind.is_symlink() {
            let link = fs::read_link(&src).map_err(io_err("readlink", &src))?;
            symlink(&link, &dst).map_err(io_err("symlink", &dst))?;
            lchown(&dst, Some(md.uid()), Some(md.gid())).map_err(io_err("chown", &dst))?;
            continue;
        }
        if kind.is_dir() {
            fs::create_dir(&dst).map_err(io_err("mkdir", &dst))?;
            copy_tree(&src, &dst)?;
        } else if kind.is_file() {
            fs::copy(&src, &dst).map_err(io_err("copy", &dst))?;
        } else {
            continue;
        }
        chown(&dst, Some(md.uid()), Some(md.gid())).map_err(io_err("chown", &dst))?;
        fs::set_permissions(&dst, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(io_err("chmod", &dst))?;
    }
    Ok(())
}
