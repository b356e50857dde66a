//! Idmapped bind mounts (runc 1.2's `idmap`/`ridmap` mount options, the way
//! containerd gives a user-namespaced pod its files): a detached copy of the
//! source (open_tree(2) with OPEN_TREE_CLONE), the user namespace's mapping
//! set on it (mount_setattr(2) MOUNT_ATTR_IDMAP), then attached onto the
//! target (move_mount(2)). The kernel only idmaps a mount nobody has seen
//! yet, hence the detached copy; and only a caller with CAP_SYS_ADMIN over
//! the source's filesystem may, hence done by the init before it enters the
//! container's user namespace (see child.rs).

use std::ffi::CString;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

// linux/mount.h.
const OPEN_TREE_CLONE: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;

/// mount_setattr(2)'s argument (MOUNT_ATTR_SIZE_VER0).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

/// `source` bound idmapped onto the directory or file `target` holds open
/// (an O_PATH fd). `recursive`: its submounts come along, idmapped too
/// (`ridmap`); else only the mount itself (`idmap`).
pub fn bind_idmapped(
    source: &Path,
    target: BorrowedFd,
    userns: BorrowedFd,
    recursive: bool,
) -> nix::Result<()> {
    let tree = open_tree_clone(source, recursive)?;
    set_idmap(tree.as_raw_fd(), userns, recursive)?;
    // SAFETY: live fds and empty C strings, as move_mount(2) takes them.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            tree.as_raw_fd(),
            c"".as_ptr(),
            target.as_raw_fd(),
            c"".as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    nix::Error::result(rc).map(drop)
}

fn open_tree_clone(source: &Path, recursive: bool) -> nix::Result<OwnedFd> {
    let path =
        CString::new(source.as_os_str().as_encoded_bytes()).map_err(|_| nix::Error::EINVAL)?;
    let mut flags = OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a valid C string; the result is a new fd or -1.
    let fd = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, path.as_ptr(), flags) };
    let fd = nix::Error::result(fd)?;
    // SAFETY: a fresh fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn set_idmap(tree: i32, userns: BorrowedFd, recursive: bool) -> nix::Result<()> {
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_IDMAP,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns.as_raw_fd() as u64,
    };
    let mut flags = libc::AT_EMPTY_PATH as libc::c_uint;
    if recursive {
        flags |= libc::AT_RECURSIVE as libc::c_uint;
    }
    // SAFETY: a live fd, an empty path and a live mount_attr of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree,
            c"".as_ptr(),
            flags,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    nix::Error::result(rc).map(drop)
}
