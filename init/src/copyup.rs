//! `tmpcopyup`: a tmpfs mounted over a directory of the image starts with
//! that directory's content (podman adds it to every `--tmpfs` and to the
//! tmpfs mounts of `--read-only`), with its owners and modes.

use std::fs;
use std::os::unix::fs::{chown, lchown, symlink, MetadataExt, PermissionsExt};
use std::path::Path;

use nix::mount::MsFlags;

use crate::in_root::Target;
use crate::rootfs::{do_mount, io_err, Result};

/// Mounts a tmpfs on the directory `below` holds and copies what it held
/// into it. The directory underneath is read through `below`, so it stays
/// reachable once covered; the new tmpfs is reached through `reopen` (the
/// destination resolved again, now onto the mount), never a path string.
pub fn mount_tmpfs_copyup(
    below: &Target,
    flags: MsFlags,
    data: Option<&str>,
    reopen: &dyn Fn() -> Result<Target>,
) -> Result<()> {
    let from = below.proc_path();
    let md = fs::metadata(&from).map_err(io_err("stat", &from))?;
    // Written read-write, then remounted with the entry's own flags.
    do_mount(
        Some(Path::new("tmpfs")),
        &from,
        Some("tmpfs"),
        flags & !MsFlags::MS_RDONLY,
        data,
    )?;
    let top = reopen()?;
    let target = top.proc_path();
    copy_tree(&from, &target)?;
    // The directory's owner and mode, unless the entry's options name them
    // (`--tmpfs /x:mode=1777` means 1777).
    let given = |key: &str| data.is_some_and(|d| d.split(',').any(|o| o.starts_with(key)));
    if !given("uid=") && !given("gid=") {
        chown(&target, Some(md.uid()), Some(md.gid())).map_err(io_err("chown", &target))?;
    }
    if !given("mode=") {
        fs::set_permissions(&target, fs::Permissions::from_mode(md.mode() & 0o7777))
            .map_err(io_err("chmod", &target))?;
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        do_mount(None, &target, None, flags | MsFlags::MS_REMOUNT, data)?;
    }
    Ok(())
}

/// Copies the content of directory `from` into `to`: directories, regular
/// files and symlinks with owner and mode; other kinds (device nodes,
/// sockets) are left out, as a tmpfs of the container's own should not
/// gain device nodes from an image.
pub fn copy_tree(from: &Path, to: &Path) -> Result<()> {
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
