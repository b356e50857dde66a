//! The container's device nodes: the defaults every container gets and
//! `linux.devices`, made with mknod — or, in a user namespace where mknod is
//! refused, bind mounts of the host's nodes.

use std::fs;
use std::path::{Path, PathBuf};

use nix::mount::MsFlags;
use nix::sys::stat::{makedev, mknod, Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use crate::paths::secure_join;
use crate::rootfs::{create_mount_point, do_mount, io_err, mkdir_all, Result};

/// The default devices every container gets (OCI config-linux.md).
pub fn default_devices() -> Vec<(&'static str, u64, u64)> {
    vec![
        ("/dev/null", 1, 3),
        ("/dev/zero", 1, 5),
        ("/dev/full", 1, 7),
        ("/dev/random", 1, 8),
        ("/dev/urandom", 1, 9),
        ("/dev/tty", 5, 0),
    ]
}

/// The /dev symlinks every container gets.
pub const DEV_SYMLINKS: &[(&str, &str)] = &[
    ("/proc/self/fd", "/dev/fd"),
    ("/proc/self/fd/0", "/dev/stdin"),
    ("/proc/self/fd/1", "/dev/stdout"),
    ("/proc/self/fd/2", "/dev/stderr"),
];

/// One device node to create in the container's /dev.
struct DeviceNode {
    path: PathBuf,
    kind: SFlag,
    major: u64,
    minor: u64,
    mode: u32,
    owner: Option<(u32, u32)>,
}

pub(crate) fn create_devices(
    rootfs: &Path,
    extra: Option<&[LinuxDevice]>,
    in_userns: bool,
) -> Result<()> {
    let mut nodes: Vec<DeviceNode> = default_devices()
        .into_iter()
        .map(|(p, major, minor)| DeviceNode {
            path: PathBuf::from(p),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            owner: None,
        })
        .collect();
    for d in extra.unwrap_or_default() {
        let kind = match d.typ() {
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            _ => SFlag::S_IFCHR,
        };
        nodes.retain(|n| n.path != *d.path());
        nodes.push(DeviceNode {
            path: d.path().clone(),
            kind,
            major: d.major() as u64,
            minor: d.minor() as u64,
            mode: d.file_mode().unwrap_or(0o666),
            owner: Some((d.uid().unwrap_or(0), d.gid().unwrap_or(0))),
        });
    }
    for n in nodes {
        let target = secure_join(rootfs, &n.path).map_err(io_err("resolve", &n.path))?;
        if let Some(parent) = target.parent() {
            mkdir_all(parent)?;
        }
        let _ = fs::remove_file(&target);
        if in_userns {
            // mknod is refused in a user namespace: bind the host's node instead.
            create_mount_point(&target, false)?;
            do_mount(Some(&n.path), &target, None, MsFlags::MS_BIND, None)?;
            continue;
        }
        let mode = Mode::from_bits_truncate(n.mode & 0o7777);
        mknod(&target, n.kind, mode, makedev(n.major, n.minor))
            .map_err(|e| io_err("mknod", &target)(e.into()))?;
        // mknod honours the umask; the spec's mode is exact.
        nix::sys::stat::fchmodat(
            None,
            &target,
            mode,
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| io_err("chmod", &target)(e.into()))?;
        if let Some((uid, gid)) = n.owner {
            nix::unistd::chown(&target, Some(uid.into()), Some(gid.into()))
                .map_err(|e| io_err("chown", &target)(e.into()))?;
        }
    }
    Ok(())
}
