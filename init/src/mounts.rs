//! mount(2) option strings as the OCI spec (and runc) understand them: flags,
//! flags to clear, propagation, and everything else passed on as fs data.

use nix::mount::MsFlags;

/// One `mounts[].options` list, translated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOptions {
    pub flags: MsFlags,
    /// Propagation changes applied after the mount (MS_SHARED, MS_SLAVE, …).
    pub propagation: Vec<MsFlags>,
    /// fs-specific data, comma-joined ("mode=755,size=65536k").
    pub data: String,
    /// `bind` or `rbind` given (rbind adds MS_REC).
    pub bind: bool,
    /// Recursive attributes (`rro`, `rnosuid`, …) for mount_setattr(2).
    pub recursive: RecursiveAttrs,
    /// `tmpcopyup`: a tmpfs starts with what the image had at its target.
    pub tmpcopyup: bool,
    /// `idmap` (Some(false)) or `ridmap` (Some(true)): a bind mapped with the
    /// container's user namespace (idmap.rs).
    pub idmap: Option<bool>,
}

/// The `attr_set`/`attr_clr` of a mount_setattr(2) call with AT_RECURSIVE.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecursiveAttrs {
    pub set: u64,
    pub clear: u64,
}

impl RecursiveAttrs {
    pub fn is_empty(&self) -> bool {
        self.set == 0 && self.clear == 0
    }
}

// linux/mount.h: MOUNT_ATTR_*.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
pub const MOUNT_ATTR_ATIME_MASK: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x200000;

/// A recursive option as (attr_set, attr_clr), runc's table. The kernel
/// takes an atime mode only with the whole atime mask cleared.
fn recursive(opt: &str) -> Option<(u64, u64)> {
    let atime = |mode| (mode, MOUNT_ATTR_ATIME_MASK);
    Some(match opt {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rrelatime" | "ratime" | "rnostrictatime" | "rnorelatime" => atime(MOUNT_ATTR_RELATIME),
        "rnoatime" => atime(MOUNT_ATTR_NOATIME),
        "rstrictatime" => atime(MOUNT_ATTR_STRICTATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

impl Default for MountOptions {
    fn default() -> Self {
        MountOptions {
            flags: MsFlags::empty(),
            propagation: Vec::new(),
            data: String::new(),
            bind: false,
            recursive: RecursiveAttrs::default(),
            tmpcopyup: false,
            idmap: None,
        }
    }
}

/// Maps an option to (flag, set?) for the flags mount(2) takes.
fn flag(opt: &str) -> Option<(MsFlags, bool)> {
    use MsFlags as F;
    Some(match opt {
        "defaults" => (F::empty(), true),
        "ro" => (F::MS_RDONLY, true),
        "rw" => (F::MS_RDONLY, false),
        "suid" => (F::MS_NOSUID, false),
        "nosuid" => (F::MS_NOSUID, true),
        "dev" => (F::MS_NODEV, false),
        "nodev" => (F::MS_NODEV, true),
        "exec" => (F::MS_NOEXEC, false),
        "noexec" => (F::MS_NOEXEC, true),
        "sync" => (F::MS_SYNCHRONOUS, true),
        "async" => (F::MS_SYNCHRONOUS, false),
        "dirsync" => (F::MS_DIRSYNC, true),
        "remount" => (F::MS_REMOUNT, true),
        "mand" => (F::MS_MANDLOCK, true),
        "nomand" => (F::MS_MANDLOCK, false),
        "atime" => (F::MS_NOATIME, false),
        "noatime" => (F::MS_NOATIME, true),
        "diratime" => (F::MS_NODIRATIME, false),
        "nodiratime" => (F::MS_NODIRATIME, true),
        "relatime" => (F::MS_RELATIME, true),
        "norelatime" => (F::MS_RELATIME, false),
        "strictatime" => (F::MS_STRICTATIME, true),
        "nostrictatime" => (F::MS_STRICTATIME, false),
        _ => return None,
    })
}

/// The propagation flag for an option or `rootfsPropagation` value.
pub fn propagation_flag(opt: &str) -> Option<MsFlags> {
    use MsFlags as F;
    Some(match opt {
        "private" => F::MS_PRIVATE,
        "rprivate" => F::MS_PRIVATE | F::MS_REC,
        "shared" => F::MS_SHARED,
        "rshared" => F::MS_SHARED | F::MS_REC,
        "slave" => F::MS_SLAVE,
        "rslave" => F::MS_SLAVE | F::MS_REC,
        "unbindable" => F::MS_UNBINDABLE,
        "runbindable" => F::MS_UNBINDABLE | F::MS_REC,
        _ => return None,
    })
}

/// Parses a `mounts[].options` list. Unknown options are fs data, as in runc.
pub fn parse_options(options: &[String]) -> Result<MountOptions, String> {
    let mut out = MountOptions::default();
    let mut data = Vec::new();
    for opt in options {
        if opt.is_empty() || opt.contains('\0') || opt.contains(',') {
            return Err(format!("bad option {opt:?}"));
        }
        if opt == "bind" || opt == "rbind" {
            out.bind = true;
            out.flags |= MsFlags::MS_BIND;
            if opt == "rbind" {
                out.flags |= MsFlags::MS_REC;
            }
        } else if let Some((f, set)) = flag(opt) {
            if set {
                out.flags |= f;
            } else {
                out.flags &= !f;
            }
        } else if let Some(p) = propagation_flag(opt) {
            out.propagation.push(p);
        } else if let Some((set, clear)) = recursive(opt) {
            // Later options win: an attribute set by one is cleared by the
            // other, and the other way round (an atime mode clears the
            // whole atime mask, so an earlier mode goes with it).
            out.recursive.set = (out.recursive.set & !clear) | set;
            out.recursive.clear = (out.recursive.clear & !set) | clear;
        } else if opt == "tmpcopyup" {
            out.tmpcopyup = true;
        } else if matches!(opt.as_str(), "idmap" | "ridmap") {
            out.idmap = Some(opt == "ridmap");
        } else {
            data.push(opt.as_str());
        }
    }
    out.data = data.join(",");
    Ok(out)
}

/// mount_setattr(2)'s argument (linux/mount.h, MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// Applies recursive attributes to the mount `target` holds and every mount
/// below it. ENOSYS: the kernel (< 5.12) has no mount_setattr, and the
/// options would otherwise be silently not applied.
pub fn apply_recursive(target: &crate::in_root::Target, attrs: RecursiveAttrs) -> nix::Result<()> {
    if attrs.is_empty() {
        return Ok(());
    }
    let attr = MountAttr {
        attr_set: attrs.set,
        attr_clr: attrs.clear,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: a live fd, an empty path and a live mount_attr of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            target.raw_fd(),
            c"".as_ptr(),
            (libc::AT_RECURSIVE | libc::AT_EMPTY_PATH) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::Error::result(rc).map(|_| ())
}

/// The flags of the mount at `path` that a remount in a user namespace must
/// keep: the kernel locks nosuid, nodev, noexec and the atime mode of a mount
/// that came from a more privileged namespace, and refuses a remount that
/// would drop them (EPERM).
pub fn locked_flags(path: &std::path::Path) -> nix::Result<MsFlags> {
    use nix::sys::statvfs::FsFlags;
    let have = nix::sys::statvfs::statvfs(path)?.flags();
    let mut out = MsFlags::empty();
    for (fs, ms) in [
        (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
        (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
        (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
        (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
        (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
        (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
    ] {
        if have.contains(fs) {
            out |= ms;
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> MountOptions {
        parse_options(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn flags_data_and_propagation() {
        let o = opts(&["nosuid", "strictatime", "mode=755", "size=65536k"]);
        assert_eq!(o.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(o.data, "mode=755,size=65536k");
        let o = opts(&["rbind", "ro", "rslave"]);
        assert!(o.bind);
        assert_eq!(
            o.flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY
        );
        assert_eq!(o.propagation, vec![MsFlags::MS_SLAVE | MsFlags::MS_REC]);
        // Later options win, as with mount(8).
        assert_eq!(opts(&["ro", "rw"]).flags, MsFlags::empty());
    }

    #[test]
    fn recursive_options_become_mount_setattr_attributes() {
        let o = opts(&["rbind", "rro", "rnosuid", "rnoatime"]);
        assert_eq!(
            o.recursive.set,
            MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOATIME
        );
        assert_eq!(o.recursive.clear, MOUNT_ATTR_ATIME_MASK);
        assert!(o.data.is_empty(), "not passed on as fs data: {:?}", o.data);
        let o = opts(&["rro", "rrw"]);
        assert_eq!((o.recursive.set, o.recursive.clear), (0, MOUNT_ATTR_RDONLY));
        let o = opts(&["tmpcopyup", "mode=755"]);
        assert!(o.tmpcopyup);
        assert_eq!(o.data, "mode=755");
    }

    #[test]
    fn idmap_options_are_not_fs_data() {
        assert_eq!(opts(&["rbind", "idmap"]).idmap, Some(false));
        let o = opts(&["rbind", "ridmap", "ro"]);
        assert_eq!(o.idmap, Some(true));
        assert!(o.data.is_empty());
        assert_eq!(opts(&["rbind"]).idmap, None);
    }

    #[test]
    fn bad_options() {
        for bad in ["", "a,b"] {
            assert!(parse_options(&[bad.to_string()]).is_err(), "{bad:?}");
        }
    }
}
