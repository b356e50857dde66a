//! Race-free mount targets (the CVE-2021-30465 class). [`crate::paths::secure_join`]
//! resolves a destination as a string; between that and mount(2) a process
//! sharing the directory (another container on the same volume, a host
//! user) can swap a component for a symlink, and mount(2) would follow it
//! out of the rootfs. Here every component is resolved by the kernel
//! against an fd of the rootfs with openat2(RESOLVE_IN_ROOT): symlinks are
//! scoped to the rootfs as if it were `/`, at the instant of the open. The
//! mount is then made onto `/proc/self/fd/N` of the O_PATH fd it returned,
//! which names that very inode whatever happens to the path meanwhile
//! (runc's way since 1.0.0-rc95).

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

/// A mount target, held open: mount onto [`Target::proc_path`].
pub struct Target {
    fd: OwnedFd,
}

impl Target {
    /// `/proc/self/fd/N`: a path that resolves to the held inode.
    pub fn proc_path(&self) -> PathBuf {
        PathBuf::from(format!("/proc/self/fd/{}", self.fd.as_raw_fd()))
    }

    pub fn raw_fd(&self) -> i32 {
        self.fd.as_raw_fd()
    }

    /// Where the held inode is now, as the kernel names it.
    pub fn real_path(&self) -> io::Result<PathBuf> {
        std::fs::read_link(self.proc_path())
    }
}

fn cstring(p: &Path) -> io::Result<CString> {
    CString::new(p.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// openat2(dirfd, path, flags, RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS).
fn openat2_in_root(dirfd: i32, path: &Path, flags: i32, mode: u32) -> io::Result<OwnedFd> {
    let c = cstring(path)?;
    // SAFETY: open_how is plain data; zeroed is its documented default.
    let mut how: libc::open_how = unsafe { std::mem::zeroed() };
    how.flags = (flags | libc::O_CLOEXEC) as u64;
    how.mode = mode as u64;
    how.resolve = libc::RESOLVE_IN_ROOT | libc::RESOLVE_NO_MAGICLINKS;
    loop {
        // SAFETY: a NUL-terminated path and a live open_how of the size given.
        let rc = unsafe {
            libc::syscall(
                libc::SYS_openat2,
                dirfd,
                c.as_ptr(),
                &how as *const libc::open_how,
                std::mem::size_of::<libc::open_how>(),
            )
        };
        if rc >= 0 {
            // SAFETY: the kernel just gave us this fd.
            return Ok(unsafe { OwnedFd::from_raw_fd(rc as i32) });
        }
        let e = io::Error::last_os_error();
        // EAGAIN: a rename raced the lookup (the kernel asks to retry).
        if e.raw_os_error() != Some(libc::EAGAIN) {
            return Err(e);
        }
    }
}

/// The destination's normal components (`..` is kept: RESOLVE_IN_ROOT
/// stops it at the root).
fn components(dest: &Path) -> Vec<&std::ffi::OsStr> {
    dest.components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n),
            Component::ParentDir => Some(std::ffi::OsStr::new("..")),
            _ => None,
        })
        .collect()
}

/// Opens (making what is missing: directories, and the last component as a
/// directory when `dir`, else an empty file) the mount target `dest` inside
/// `rootfs`, every lookup scoped to `rootfs`.
pub fn open_target(rootfs: &Path, dest: &Path, dir: bool) -> io::Result<Target> {
    let root = std::fs::File::open(rootfs)?;
    let root = OwnedFd::from(root);
    let parts = components(dest);
    let mut walked = PathBuf::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let parent = openat2_in_root(
            root.as_raw_fd(),
            if walked.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &walked
            },
            libc::O_PATH | libc::O_DIRECTORY,
            0,
        )?;
        walked.push(part);
        if *part == ".." {
            continue;
        }
        match openat2_in_root(root.as_raw_fd(), &walked, libc::O_PATH, 0) {
            Ok(_) => continue,
            Err(e) if e.raw_os_error() != Some(libc::ENOENT) => return Err(e),
            Err(_) => {}
        }
        // Made through the parent's fd: mkdirat/openat(O_CREAT|O_EXCL) on
        // one name follow no symlink, so nothing is made outside the root.
        let name = cstring(Path::new(part))?;
        // SAFETY: a live dir fd and a NUL-terminated single name.
        let rc = if last && !dir {
            let fd = unsafe {
                libc::openat(
                    parent.as_raw_fd(),
                    name.as_ptr(),
                    libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                    0o644,
                )
            };
            if fd >= 0 {
                // SAFETY: ours, closed at once.
                drop(unsafe { OwnedFd::from_raw_fd(fd) });
            }
            fd
        } else {
            unsafe { libc::mkdirat(parent.as_raw_fd(), name.as_ptr(), 0o755) }
        };
        if rc < 0 {
            let e = io::Error::last_os_error();
            // Made by someone else meanwhile: the open below decides.
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(e);
            }
        }
    }
    let flags = libc::O_PATH | if dir { libc::O_DIRECTORY } else { 0 };
    let fd = openat2_in_root(root.as_raw_fd(), &walked_or_dot(&walked), flags, 0)?;
    let target = Target { fd };
    // Belt and braces: the inode is under the rootfs (as the kernel names
    // both: `rootfs` may be reached through a symlink).
    let root_real = std::fs::read_link(format!("/proc/self/fd/{}", root.as_raw_fd()))?;
    let real = target.real_path()?;
    if !real.starts_with(&root_real) {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!(
                "{} resolves to {}, outside the rootfs",
                dest.display(),
                real.display()
            ),
        ));
    }
    Ok(target)
}

/// Opens the existing directory `dest` inside `rootfs` (symlinks scoped to
/// it); nothing is made.
pub fn open_existing_dir(rootfs: &Path, dest: &Path) -> io::Result<Target> {
    let root = OwnedFd::from(std::fs::File::open(rootfs)?);
    let rel: PathBuf = components(dest).into_iter().collect();
    let fd = openat2_in_root(
        root.as_raw_fd(),
        &walked_or_dot(&rel),
        libc::O_PATH | libc::O_DIRECTORY,
        0,
    )?;
    Ok(Target { fd })
}

fn walked_or_dot(p: &Path) -> PathBuf {
    if p.as_os_str().is_empty() {
        PathBuf::from(".")
    } else {
        p.to_path_buf()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-inroot-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn symlinks_resolve_inside_the_root_and_missing_parts_are_made() {
        let base = tmp("links");
        let root = base.join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink("/", root.join("abs")).unwrap();
        symlink("../../../..", root.join("real/up")).unwrap();
        let t = open_target(&root, Path::new("/abs/etc/new"), true).unwrap();
        assert_eq!(t.real_path().unwrap(), root.join("etc/new"));
        let t = open_target(&root, Path::new("/real/up/f"), false).unwrap();
        assert_eq!(t.real_path().unwrap(), root.join("f"));
        assert!(root.join("f").is_file());
        assert!(!base.join("f").exists(), "nothing made outside the root");
        std::fs::remove_dir_all(base).unwrap();
    }

    /// A component swapped between a directory and a symlink out of the
    /// root while targets are opened: every target lands inside the root.
    #[test]
    fn a_symlink_swapped_in_during_the_walk_never_escapes() {
        let base = tmp("race");
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(root.join("vol")).unwrap();
        std::fs::create_dir_all(outside.join("x")).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let swapper = {
            let (stop, root, outside) = (stop.clone(), root.clone(), outside.clone());
            std::thread::spawn(move || {
                let (dir, link) = (root.join("vol/d"), root.join("vol/l"));
                while !stop.load(Ordering::Relaxed) {
                    let _ = std::fs::create_dir(&dir);
                    let _ = std::fs::rename(&dir, root.join("vol/x"));
                    let _ = symlink(&outside, &link);
                    let _ = std::fs::rename(&link, root.join("vol/x"));
                    let _ = std::fs::remove_file(root.join("vol/x"));
                    let _ = std::fs::remove_dir(root.join("vol/x"));
                }
            })
        };
        for _ in 0..3000 {
            if let Ok(t) = open_target(&root, Path::new("/vol/x"), true) {
                let real = t.real_path().unwrap();
                assert!(real.starts_with(&root), "escaped to {}", real.display());
            }
        }
        stop.store(true, Ordering::Relaxed);
        swapper.join().unwrap();
        std::fs::remove_dir_all(base).unwrap();
    }
}
