//! The container's filesystem: propagation, mounts[], devices, /dev symlinks,
//! pivot_root, masked and read-only paths, read-only root.
//!
//! Runs in the container's new mount namespace. The order follows runc's
//! (prepareRoot → mounts → devices → pivot_root; then sysctls, readonlyPaths,
//! maskedPaths, readonly root) because later steps depend on earlier ones:
//! /proc/sys can only be written before it is made read-only, and masking needs
//! the container's /dev/null.

use std::fs;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::{symlink, DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use nix::mount::{mount, MsFlags};
use oci_spec::runtime::{Mount, Spec};

use crate::mounts::{parse_options, propagation_flag};
use crate::paths::secure_join;

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("mount {what} on {target}: {source}")]
    Mount {
        what: String,
        target: PathBuf,
        source: nix::Error,
    },
    #[error("{what} {path}: {source}")]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
    #[error("mounts[{index}]: {message}")]
    BadMount { index: usize, message: String },
    #[error("pivot_root into {root}: {source}")]
    Pivot { root: PathBuf, source: nix::Error },
    #[error("sysctl {key}: {source}")]
    Sysctl { key: String, source: io::Error },
    #[error("waiting to be placed in the container's cgroup: {0}")]
    NotPlaced(String),
}

pub(crate) type Result<T> = std::result::Result<T, RootfsError>;

pub(crate) fn do_mount(
    src: Option<&Path>,
    target: &Path,
    fstype: Option<&str>,
    flags: MsFlags,
    data: Option<&str>,
) -> Result<()> {
    mount(src, target, fstype, flags, data).map_err(|source| RootfsError::Mount {
        what: fstype.map(str::to_string).unwrap_or_else(|| {
            src.map(|s| s.display().to_string())
                .unwrap_or_else(|| format!("{flags:?}"))
        }),
        target: target.into(),
        source,
    })
}

pub(crate) fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> RootfsError {
    let path = path.to_path_buf();
    move |source| RootfsError::Io { what, path, source }
}

pub(crate) fn mkdir_all(path: &Path) -> Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o755)
        .create(path)
        .map_err(io_err("mkdir", path))
}

/// Everything before pivot_root. `in_userns` switches device creation from
/// mknod (not allowed there) to bind mounts of the host's nodes;
/// `idmap_userns` is the user namespace `idmap`/`ridmap` binds are mapped
/// with (the one the init enters afterwards, namespaces::LateUser).
pub fn mount_all(
    spec: &Spec,
    bundle: &crate::spec::Bundle,
    in_userns: bool,
    idmap_userns: Option<BorrowedFd>,
    placed: &dyn Fn() -> std::result::Result<(), String>,
) -> Result<()> {
    let (rootfs, bundle) = (bundle.rootfs.as_path(), bundle.dir.as_path());
    let linux = spec.linux().as_ref();
    let propagation = linux
        .and_then(|l| l.rootfs_propagation().as_deref())
        .and_then(propagation_flag)
        .unwrap_or(MsFlags::MS_SLAVE | MsFlags::MS_REC);
    // Nothing we mount may propagate back to the host.
    do_mount(None, Path::new("/"), None, propagation, None)?;
    // A shared propagation asked for "/" must not reach the host either, and
    // pivot_root refuses a new root whose parent mount is shared (EINVAL):
    // runc makes that parent private, so do we. After a recursive change to
    // anything but shared (the default rslave) no mount is shared: no need
    // to read mountinfo, which is long on a node with many mounts.
    let none_shared =
        propagation.contains(MsFlags::MS_REC) && !propagation.contains(MsFlags::MS_SHARED);
    if !none_shared {
        make_parent_mount_private(rootfs)?;
    }
    // pivot_root needs the new root to be a mount point.
    do_mount(
        Some(rootfs),
        rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )?;

    let cgroupns = linux
        .and_then(|l| l.namespaces().as_ref())
        .is_some_and(|ns| {
            ns.iter()
                .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Cgroup)
        });
    let ctx = MountContext {
        rootfs,
        bundle,
        cgroupns,
        idmap_userns,
        placed,
    };
    let mut dev_is_bind = false;
    for (index, m) in spec.mounts().iter().flatten().enumerate() {
        if m.destination() == Path::new("/dev") && is_bind(m) {
            dev_is_bind = true;
        }
        mount_entry(index, m, &ctx)?;
    }
    if !dev_is_bind {
        crate::dev_nodes::create_devices(
            rootfs,
            linux.and_then(|l| l.devices().as_deref()),
            in_userns,
        )?;
        for (target, link) in crate::dev_nodes::DEV_SYMLINKS {
            let at = rootfs.join(link.trim_start_matches('/'));
            match symlink(target, &at) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(io_err("symlink", &at)(e))
                }
                _ => {}
            }
        }
        let ptmx = rootfs.join("dev/ptmx");
        if rootfs.join("dev/pts/ptmx").exists() {
            let _ = fs::remove_file(&ptmx);
            symlink("pts/ptmx", &ptmx).map_err(io_err("symlink", &ptmx))?;
        }
    }
    Ok(())
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind")
        || m.options()
            .iter()
            .flatten()
            .any(|o| o == "bind" || o == "rbind")
}

/// What every mounts[] entry is mounted against.
struct MountContext<'a> {
    rootfs: &'a Path,
    bundle: &'a Path,
    /// The container has a cgroup namespace of its own.
    cgroupns: bool,
    idmap_userns: Option<BorrowedFd<'a>>,
    /// Waits until the init sits in its cgroup (and cgroup namespace):
    /// what a cgroup mount shows depends on it.
    placed: &'a dyn Fn() -> std::result::Result<(), String>,
}

/// Makes the mount holding `rootfs` private if it is shared (runc's
/// rootfsParentMountPrivate): a rootfs bind and everything mounted in the
/// rootfs would otherwise propagate to the mount's peers in the host.
fn make_parent_mount_private(rootfs: &Path) -> Result<()> {
    let info = fs::read_to_string("/proc/self/mountinfo")
        .map_err(io_err("read", Path::new("/proc/self/mountinfo")))?;
    let mut best: Option<(&str, bool)> = None;
    for line in info.lines() {
        let Some((left, _)) = line.split_once(" - ") else {
            continue;
        };
        let fields: Vec<&str> = left.split_whitespace().collect();
        let Some(point) = fields.get(4) else {
            continue;
        };
        if !rootfs.starts_with(point) {
            continue;
        }
        // Later lines are later mounts: on the same point, the top one wins.
        if best.is_none_or(|(b, _)| point.len() >= b.len()) {
            let shared = fields[6..].iter().any(|f| f.starts_with("shared:"));
            best = Some((point, shared));
        }
    }
    match best {
        Some((point, true)) => do_mount(None, Path::new(point), None, MsFlags::MS_PRIVATE, None),
        _ => Ok(()),
    }
}

/// `proc` and `sysfs` go on ordinary directories only, as runc requires: a
/// symlink in the image at /proc or /sys would redirect them elsewhere in
/// the rootfs (where the container's own files could shadow them).
fn check_ordinary_dir(
    rootfs: &Path,
    dest: &Path,
    resolved: &Path,
) -> std::result::Result<(), String> {
    let literal = rootfs.join(dest.strip_prefix("/").unwrap_or(dest));
    if literal != resolved {
        return Err(format!(
            "{} must be mounted on an ordinary directory (it resolves to {} through a symlink)",
            dest.display(),
            resolved.display()
        ));
    }
    match fs::symlink_metadata(resolved) {
        Ok(md) if !md.is_dir() => Err(format!(
            "{} must be mounted on an ordinary directory",
            dest.display()
        )),
        _ => Ok(()),
    }
}

fn mount_entry(index: usize, m: &Mount, ctx: &MountContext) -> Result<()> {
    let (rootfs, bundle) = (ctx.rootfs, ctx.bundle);
    let bad = |message: String| RootfsError::BadMount { index, message };
    let opts = parse_options(m.options().as_deref().unwrap_or_default()).map_err(&bad)?;
    let target =
        secure_join(rootfs, m.destination()).map_err(io_err("resolve", m.destination()))?;
    let fstype = m.typ().as_deref().unwrap_or("none");
    if matches!(fstype, "proc" | "sysfs") {
        check_ordinary_dir(rootfs, m.destination(), &target).map_err(&bad)?;
    }
    let bind = opts.bind || fstype == "bind";

    // Bind and plain mounts (what a user's -v, --mount and --tmpfs become)
    // go onto a target the kernel resolved inside the rootfs and that stays
    // held (in_root.rs); every later step on the new mount reopens it, so a
    // swapped path cannot redirect any of them.
    let reopen = || {
        crate::in_root::open_target(rootfs, m.destination(), true).map_err(|e| {
            RootfsError::BadMount {
                index,
                message: format!("{}: {e}", m.destination().display()),
            }
        })
    };
    let at: crate::in_root::Target;
    if bind {
        let src = m
            .source()
            .as_ref()
            .ok_or_else(|| bad("bind without source".into()))?;
        let src = if src.is_absolute() {
            src.clone()
        } else {
            bundle.join(src)
        };
        let src_md = fs::metadata(&src).map_err(io_err("stat", &src))?;
        let held = crate::in_root::open_target(rootfs, m.destination(), src_md.is_dir())
            .map_err(|e| bad(format!("{}: {e}", m.destination().display())))?;
        let mut flags = MsFlags::MS_BIND;
        if opts.flags.contains(MsFlags::MS_REC) {
            flags |= MsFlags::MS_REC;
        }
        match (opts.idmap, ctx.idmap_userns) {
            (None, _) => do_mount(Some(&src), &held.proc_path(), None, flags, None)?,
            (Some(recursive), Some(userns)) => {
                crate::idmap::bind_idmapped(&src, held.fd(), userns, recursive).map_err(
                    |source| RootfsError::Mount {
                        what: format!("{} (idmapped)", src.display()),
                        target: target.clone(),
                        source,
                    },
                )?
            }
            (Some(_), None) => {
                return Err(bad(
                    "idmap/ridmap needs a user namespace joined by path".into()
                ))
            }
        }
        // The new mount, as the destination now resolves (onto its root).
        at = crate::in_root::open_target(rootfs, m.destination(), src_md.is_dir())
            .map_err(|e| bad(format!("{}: {e}", m.destination().display())))?;
        // A bind mount ignores every other flag; they need a remount.
        let rest = opts.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        if !rest.is_empty() {
            do_mount(
                None,
                &at.proc_path(),
                None,
                rest | MsFlags::MS_BIND | MsFlags::MS_REMOUNT,
                None,
            )?;
        }
    } else {
        let data = (!opts.data.is_empty()).then_some(opts.data.as_str());
        match fstype {
            "cgroup" | "cgroup2" => {
                create_mount_point(&target, true)?;
                (ctx.placed)().map_err(RootfsError::NotPlaced)?;
                crate::cgroup_mount::mount_cgroup(&target, opts.flags, ctx.cgroupns)?
            }
            "tmpfs" if opts.tmpcopyup => {
                let below = reopen()?;
                crate::copyup::mount_tmpfs_copyup(&below, opts.flags, data, &reopen)?
            }
            "sysfs" => {
                create_mount_point(&target, true)?;
                // Without a new net namespace the kernel refuses a fresh sysfs;
                // runc falls back to binding the host's, read-only — so do we.
                if let Err(e) = mount(Some("sysfs"), &target, Some("sysfs"), opts.flags, data) {
                    if e != nix::Error::EPERM {
                        return Err(RootfsError::Mount {
                            what: "sysfs".into(),
                            target,
                            source: e,
                        });
                    }
                    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
                    do_mount(Some(Path::new("/sys")), &target, None, flags, None)?;
                    do_mount(
                        None,
                        &target,
                        None,
                        flags | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                        None,
                    )?;
                }
            }
            _ => {
                let held = reopen()?;
                let src = m.source().as_deref().unwrap_or(Path::new(fstype));
                do_mount(Some(src), &held.proc_path(), Some(fstype), opts.flags, data)?;
            }
        }
        at = reopen()?;
    }
    crate::mounts::apply_recursive(&at, opts.recursive).map_err(|source| RootfsError::Mount {
        what: "recursive options (mount_setattr)".into(),
        target: target.clone(),
        source,
    })?;
    for p in &opts.propagation {
        do_mount(None, &at.proc_path(), None, *p, None)?;
    }
    Ok(())
}

pub(crate) fn create_mount_point(target: &Path, dir: bool) -> Result<()> {
    if dir {
        return mkdir_all(target);
    }
    if let Some(parent) = target.parent() {
        mkdir_all(parent)?;
    }
    if !target.exists() {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o644)
            .open(target)
            .map_err(io_err("create", target))?;
    }
    Ok(())
}
