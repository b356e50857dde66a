//! The root switch and what follows it: pivot_root (or move + chroot) into
//! the prepared rootfs, then sysctls, read-only and masked paths and the
//! read-only root — the steps that must see the container's own /proc and
//! /dev (rootfs.rs prepared them before the switch).

use std::fs;
use std::io;
use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::unistd::{chdir, chroot, pivot_root};
use oci_spec::runtime::Spec;

use crate::mounts::propagation_flag;
use crate::rootfs::{do_mount, io_err, Result, RootfsError};

/// Makes `rootfs` the root: pivot_root, or MS_MOVE + chroot with `no_pivot`
/// (roots on initramfs, where pivot_root is refused).
pub fn enter(rootfs: &Path, no_pivot: bool) -> Result<()> {
    let pivot_err = |source| RootfsError::Pivot {
        root: rootfs.into(),
        source,
    };
    chdir(rootfs).map_err(pivot_err)?;
    if no_pivot {
        // initramfs roots cannot be pivoted away from: move + chroot instead.
        do_mount(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)?;
        chroot(".").map_err(pivot_err)?;
    } else {
        // The old root, held to step into after the pivot (as runc does):
        // "." must name the old root, stacked on the new one, for the
        // rslave below. From the new root's directory "." resolves to the
        // new root, whose rslave would cut a bidirectional (rshared) bind
        // off from the host's peer group.
        let old_root = fs::File::open("/").map_err(io_err("open", Path::new("/")))?;
        pivot_root(".", ".").map_err(pivot_err)?;
        nix::unistd::fchdir(std::os::fd::AsRawFd::as_raw_fd(&old_root)).map_err(pivot_err)?;
        drop(old_root);
        // The old root is stacked on "."; make it a slave so detaching it
        // cannot propagate unmounts to the host, then detach it.
        do_mount(
            None,
            Path::new("."),
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
        )?;
        umount2(".", MntFlags::MNT_DETACH).map_err(pivot_err)?;
    }
    chdir("/").map_err(pivot_err)
}

/// After pivot_root: sysctls, read-only and masked paths, read-only root.
pub fn finalize(spec: &Spec) -> Result<()> {
    let Some(linux) = spec.linux() else {
        return readonly_root(spec);
    };
    for (key, value) in linux.sysctl().iter().flatten() {
        let path = Path::new("/proc/sys").join(key.replace('.', "/"));
        fs::write(&path, value).map_err(|source| RootfsError::Sysctl {
            key: key.clone(),
            source,
        })?;
    }
    // Relative entries are relative to the container's root, as runc takes them.
    let in_root = |p: &String| Path::new("/").join(p);
    for p in linux.readonly_paths().iter().flatten() {
        let path = &in_root(p);
        let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
        match mount(Some(path), path, None::<&str>, flags, None::<&str>) {
            Err(nix::Error::ENOENT) => continue,
            other => other.map_err(|source| RootfsError::Mount {
                what: "readonly path".into(),
                target: path.into(),
                source,
            })?,
        }
        let ro = MsFlags::MS_BIND
            | MsFlags::MS_REMOUNT
            | MsFlags::MS_RDONLY
            | MsFlags::MS_NOSUID
            | MsFlags::MS_NODEV
            | MsFlags::MS_NOEXEC
            | locked(path)?;
        do_mount(None, path, None, ro, None)?;
    }
    for p in linux.masked_paths().iter().flatten() {
        mask(&in_root(p))?;
    }
    if let Some(prop) = linux
        .rootfs_propagation()
        .as_deref()
        .and_then(propagation_flag)
    {
        if prop.contains(MsFlags::MS_SHARED) {
            do_mount(None, Path::new("/"), None, prop, None)?;
        }
    }
    readonly_root(spec)
}

/// Masks a path: /dev/null over a file, an empty read-only tmpfs over a dir.
fn mask(path: &Path) -> Result<()> {
    let md = match fs::metadata(path) {
        Ok(md) => md,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_err("stat", path)(e)),
    };
    if md.is_dir() {
        do_mount(
            Some(Path::new("tmpfs")),
            path,
            Some("tmpfs"),
            MsFlags::MS_RDONLY,
            Some("size=0"),
        )
    } else {
        do_mount(
            Some(Path::new("/dev/null")),
            path,
            None,
            MsFlags::MS_BIND,
            None,
        )
    }
}

fn readonly_root(spec: &Spec) -> Result<()> {
    if spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false)
    {
        let root = Path::new("/");
        let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | locked(root)?;
        do_mount(None, root, None, flags, None)?;
    }
    Ok(())
}

/// The flags a remount of `path` must keep (see [`crate::mounts::locked_flags`]).
fn locked(path: &Path) -> Result<MsFlags> {
    crate::mounts::locked_flags(path).map_err(|e| io_err("statvfs", path)(e.into()))
}
