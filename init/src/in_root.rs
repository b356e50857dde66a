//! Race-free mount targets (the CVE-2021-30465 class). [`crate::paths::secure_join`]
//! resolves a destination as a string; between that and mount(2) a process
//! sharing the directory (another container on the same volume, a host
//! user) can swap a component for a symlink, and mount(2) would follow it
//! out of the rootfs. Here the target is walked one name at a time from
//! held directory fds (symlinks read and followed by us, scoped to the
//! rootfs), or resolved by the kernel with openat2(RESOLVE_IN_ROOT); the
//! mount is then made onto `/proc/self/fd/N` of the O_PATH fd, which names
//! that very inode whatever happens to the path meanwhile (runc's way since
//! 1.0.0-rc95).

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
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

    pub fn fd(&self) -> std::os::fd::BorrowedFd<'_> {
        std::os::fd::AsFd::as_fd(&self.fd)
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
/// `rootfs`. The walk goes one name at a time from held directory fds
/// (openat O_NOFOLLOW): a symlink met on the way is read and followed by
/// us, scoped to `rootfs` (absolute targets restart at it, `..` stops at
/// it), so a symlink dangling out of the rootfs gets its target made inside
/// it, as runc's MkdirAllInRoot does, and a swap meanwhile changes nothing.
pub fn open_target(rootfs: &Path, dest: &Path, dir: bool) -> io::Result<Target> {
    let root = open_dir(libc::AT_FDCWD, &cstring(rootfs)?)?;
    // The directories below the root we are in, innermost last.
    let mut stack: Vec<OwnedFd> = Vec::new();
    let mut pending: Vec<OsString> = Vec::new();
    push_components(&mut pending, dest);
    let mut links = 0;
    let mut found: Option<OwnedFd> = None;
    while let Some(part) = pending.pop() {
        found = None;
        if part == ".." {
            stack.pop();
            continue;
        }
        let last = pending.is_empty();
        let cur = stack.last().unwrap_or(&root).as_raw_fd();
        let name = cstring(Path::new(&part))?;
        let fd = match open_nofollow(cur, &name) {
            Ok(fd) => fd,
            Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                make(cur, &name, last && !dir)?;
                // Opened (and checked) on the next turn.
                pending.push(part);
                continue;
            }
            Err(e) => return Err(e),
        };
        let md = fstat(&fd)?;
        match md.st_mode & libc::S_IFMT {
            libc::S_IFLNK => {
                links += 1;
                if links > MAX_LINKS {
                    return Err(io::Error::from_raw_os_error(libc::ELOOP));
                }
                let target = readlink_fd(&fd)?;
                if target.is_absolute() {
                    stack.clear();
                }
                push_components(&mut pending, &target);
            }
            libc::S_IFDIR if !last => stack.push(fd),
            _ if !last => return Err(io::Error::from_raw_os_error(libc::ENOTDIR)),
            _ => found = Some(fd),
        }
    }
    let fd = match found {
        Some(fd) => fd,
        // No components (`/`), or a path ending in `..`: the directory we
        // are in.
        None => stack.pop().map_or_else(|| dup(&root), Ok)?,
    };
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

/// Too many symlinks on one path: the kernel's own limit.
const MAX_LINKS: usize = 40;

/// Pushes `path`'s normal and `..` components so that `pop` yields them in
/// order.
fn push_components(stack: &mut Vec<OsString>, path: &Path) {
    let parts: Vec<OsString> = components(path)
        .into_iter()
        .map(|c| c.to_os_string())
        .collect();
    stack.extend(parts.into_iter().rev());
}

fn check(rc: libc::c_int) -> io::Result<OwnedFd> {
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the kernel just gave us this fd.
    Ok(unsafe { OwnedFd::from_raw_fd(rc) })
}

fn open_dir(at: i32, path: &CString) -> io::Result<OwnedFd> {
    // SAFETY: a NUL-terminated path.
    check(unsafe {
        libc::openat(
            at,
            path.as_ptr(),
            libc::O_PATH | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    })
}

/// One name under `dir`, the name itself if it is a symlink.
fn open_nofollow(dir: i32, name: &CString) -> io::Result<OwnedFd> {
    // SAFETY: a live dir fd and a NUL-terminated single name.
    check(unsafe {
        libc::openat(
            dir,
            name.as_ptr(),
            libc::O_PATH | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })
}

/// Makes `name` under `dir` (a directory, or an empty file): mkdirat and
/// openat(O_CREAT|O_EXCL) follow no symlink. Made meanwhile by someone
/// else is fine: the next open decides.
fn make(dir: i32, name: &CString, file: bool) -> io::Result<()> {
    // SAFETY: a live dir fd and a NUL-terminated single name.
    let rc = unsafe {
        if file {
            libc::openat(
                dir,
                name.as_ptr(),
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                0o644,
            )
        } else {
            libc::mkdirat(dir, name.as_ptr(), 0o755)
        }
    };
    if rc < 0 {
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EEXIST) {
            return Err(e);
        }
    } else if file {
        // SAFETY: the file's fd, ours; closed at once.
        drop(unsafe { OwnedFd::from_raw_fd(rc) });
    }
    Ok(())
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: stat is plain data, filled by the kernel.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: a live fd and an empty path with AT_EMPTY_PATH.
    let rc = unsafe {
        libc::fstatat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            &mut st,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(st)
}

/// The target of the symlink `fd` holds (an O_PATH|O_NOFOLLOW fd).
fn readlink_fd(fd: &OwnedFd) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: a live fd, an empty path, and a buffer of the length given.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fd.try_clone()
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
        // A symlink dangling out of the root: its target is made inside.
        symlink("../../../../../nowhere/d", root.join("dangling")).unwrap();
        let t = open_target(&root, Path::new("/dangling/m"), true).unwrap();
        assert_eq!(t.real_path().unwrap(), root.join("nowhere/d/m"));
        assert!(!base.join("nowhere").exists() && !Path::new("/nowhere").exists());
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
        // vol/x and vol/y swapped atomically (renameat2 RENAME_EXCHANGE, as
        // the CVE's exploit does): x is a directory one instant, a symlink
        // out of the root the next.
        std::fs::create_dir(root.join("vol/x")).unwrap();
        symlink(&outside, root.join("vol/y")).unwrap();
        let swapper = {
            let (stop, root) = (stop.clone(), root.clone());
            std::thread::spawn(move || {
                let x = cstring(&root.join("vol/x")).unwrap();
                let y = cstring(&root.join("vol/y")).unwrap();
                while !stop.load(Ordering::Relaxed) {
                    // SAFETY: two NUL-terminated paths.
                    unsafe {
                        libc::renameat2(
                            libc::AT_FDCWD,
                            x.as_ptr(),
                            libc::AT_FDCWD,
                            y.as_ptr(),
                            libc::RENAME_EXCHANGE,
                        )
                    };
                }
            })
        };
        for _ in 0..5000 {
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
