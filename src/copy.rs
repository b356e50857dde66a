//! CopyFromContainer / CopyToContainer (`berthctl cp`): tar streams over a
//! pipe handed across the bus, read or written by berthd inside the
//! container's root.
//!
//! The container's files are the container's to shape, links included, so
//! every path is resolved with openat2(RESOLVE_IN_ROOT) from the container's
//! root: a link to /etc/shadow (or a directory link to /etc) names the
//! container's file, never the host's. Below the first open, everything is
//! relative to an fd opened with O_NOFOLLOW: a walk never follows a link,
//! it archives it; an extraction never writes through one.
//!
//! The root: /proc/<init>/root while the container's init lives (it is the
//! root of the container's mount namespace, mounts and all); for a stopped
//! container the rootfs its spec names (an image container's overlay stays
//! mounted until delete).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("path {0:?} must be absolute")]
    Relative(String),
    #[error("{path:?} in container {id}: {source}")]
    Resolve {
        id: String,
        path: String,
        source: std::io::Error,
    },
    #[error("{0:?} is not a directory in the container")]
    NotADirectory(String),
    #[error("archive entry {0:?} leaves the destination (absolute or with ..)")]
    EntryOutside(String),
    #[error("archive entry {0:?}: only files, directories and symlinks can be copied in")]
    EntryType(String),
    #[error("archive entry {path:?}: {source}")]
    Entry {
        path: String,
        source: std::io::Error,
    },
    #[error("reading the archive: {0}")]
    Archive(std::io::Error),
    #[error("the container's root: {0}")]
    Root(String),
}

impl From<CopyError> for crate::error::Error {
    fn from(e: CopyError) -> Self {
        use crate::error::Error;
        match &e {
            CopyError::Resolve { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Error::NotFound(e.to_string())
            }
            CopyError::Root(_) => Error::FailedPrecondition(e.to_string()),
            CopyError::Archive(_) | CopyError::Entry { .. } => Error::Internal(e.to_string()),
            _ => Error::InvalidArgument(e.to_string()),
        }
    }
}

/// The most a path argument may be.
const MAX_PATH: usize = 4096;

fn check_path(path: &str) -> Result<(), CopyError> {
    match path.starts_with('/') && path.len() <= MAX_PATH && !path.contains('\0') {
        true => Ok(()),
        false => Err(CopyError::Relative(crate::daemon::brief(path).into())),
    }
}

/// Opens the container's root as a directory fd.
pub fn open_root(root: &Path) -> Result<OwnedFd, CopyError> {
    rustix::fs::open(
        root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| CopyError::Root(format!("{}: {e}", root.display())))
}

/// `path` opened inside `root` (links resolved as the container sees
/// them; the last component not followed when `nofollow`).
fn open_in(
    root: &OwnedFd,
    id: &str,
    path: &str,
    flags: OFlags,
    nofollow: bool,
) -> Result<OwnedFd, CopyError> {
    let mut flags = flags | OFlags::CLOEXEC;
    if nofollow {
        flags |= OFlags::NOFOLLOW;
    }
    let rel = path.trim_start_matches('/');
    let rel = if rel.is_empty() { "." } else { rel };
    rustix::fs::openat2(
        root,
        rel,
        flags,
        Mode::empty(),
        ResolveFlags::IN_ROOT | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| CopyError::Resolve {
        id: id.into(),
        path: crate::daemon::brief(path).into(),
        source: e.into(),
    })
}

/// The archive of `path` (its last component: a link is archived as a
/// link), written to `out` as it is read.
pub struct Source {
    fd: OwnedFd,
    name: PathBuf,
}

/// Checks and opens `path` in the container (errors here are the call's);
/// the tar is written later by `write_tar`.
pub fn open_source(root: &OwnedFd, id: &str, path: &str) -> Result<Source, CopyError> {
    check_path(path)?;
    let fd = open_in(root, id, path, OFlags::PATH, true)?;
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| PathBuf::from("."), PathBuf::from);
    Ok(Source { fd, name })
}

fn io(e: rustix::io::Errno) -> std::io::Error {
    e.into()
}

/// Writes the archive of `src` to `out`.
pub fn write_tar(src: Source, out: impl Write) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    append(&mut tar, &src.fd, None, &src.name, false)?;
    tar.finish()
}

/// Writes an overlay upper directory as an OCI layer: its whiteouts (0/0
/// character devices) as `.wh.<name>`, its opaque directories with a
/// `.wh..wh..opq` entry (commit.rs).
pub fn write_layer(src: Source, out: impl Write) -> std::io::Result<()> {
    let mut tar = tar::Builder::new(out);
    append(&mut tar, &src.fd, None, &src.name, true)?;
    tar.finish()
}

/// Appends the entry `name` (`at` = (its directory, its name there); None:
/// `fd` itself, an O_PATH fd of the source).
fn append<W: Write>(
    tar: &mut tar::Builder<W>,
    fd: &OwnedFd,
    at: Option<&std::ffi::OsStr>,
    name: &Path,
    layer: bool,
) -> std::io::Result<()> {
    let (dir, entry): (&OwnedFd, &std::ffi::OsStr) = match at {
        Some(n) => (fd, n),
        None => (fd, std::ffi::OsStr::new("")),
    };
    let flags = match at {
        Some(_) => AtFlags::SYMLINK_NOFOLLOW,
        None => AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
    };
    let st = rustix::fs::statat(dir, entry, flags).map_err(io)?;
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid.into());
    h.set_gid(st.st_gid.into());
    h.set_mtime(st.st_mtime.max(0) as u64);
    let open = |f: OFlags| {
        rustix::fs::openat(
            dir,
            entry,
            f | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io)
    };
    let reopen = |f: OFlags| match at {
        Some(_) => open(f),
        // The O_PATH fd itself: reopened through /proc/self/fd, our own fd.
        None => rustix::fs::open(
            format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(fd)),
            f | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io),
    };
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(dir, entry, Vec::new()).map_err(io)?;
            h.set_entry_type(tar::EntryType::Symlink);
            h.set_size(0);
            let target = OsStr::from_bytes(target.as_bytes());
            tar.append_link(&mut h, name, target)
        }
        FileType::RegularFile => {
            let file = File::from(reopen(OFlags::RDONLY)?);
            h.set_entry_type(tar::EntryType::Regular);
            h.set_size(st.st_size as u64);
            tar.append_data(&mut h, name, file.take(st.st_size as u64))
        }
        FileType::Directory => {
            let dirfd = reopen(OFlags::RDONLY | OFlags::DIRECTORY)?;
            h.set_entry_type(tar::EntryType::Directory);
            h.set_size(0);
            tar.append_data(&mut h, name, std::io::empty())?;
            if layer && crate::commit::is_opaque(&dirfd) {
                crate::commit::append_whiteout(tar, &name.join(".wh..wh..opq"))?;
            }
            let mut names = Vec::new();
            for e in rustix::fs::Dir::read_from(&dirfd).map_err(io)? {
                let e = e.map_err(io)?;
                let n = OsStr::from_bytes(e.file_name().to_bytes()).to_owned();
                if n != "." && n != ".." {
                    names.push(n);
                }
            }
            names.sort();
            for n in names {
                append(tar, &dirfd, Some(&n), &name.join(&n), layer)?;
            }
            Ok(())
        }
        FileType::CharacterDevice if layer && st.st_rdev == 0 => {
            let mut wh = name.to_path_buf();
            wh.set_file_name(format!(".wh.{}", entry.to_string_lossy()));
            crate::commit::append_whiteout(tar, &wh)
        }
        // Devices, FIFOs, sockets: not content to copy (a FIFO would block).
        _ => Ok(()),
    }
}

/// Where an archive goes: into directory `dir` (the entries' own names),
/// or, when `path` is not a directory, into its parent with the archive's
/// top entry renamed to `path`'s name (`cp file ctr:/tmp/new`).
pub struct Dest {
    root: OwnedFd,
    id: String,
    dir: String,
    rename: Option<std::ffi::OsString>,
}

pub fn open_dest(root: OwnedFd, id: &str, path: &str) -> Result<Dest, CopyError> {
    check_path(path)?;
    let is_dir = open_in(&root, id, path, OFlags::DIRECTORY | OFlags::PATH, false).is_ok();
    let p = Path::new(path);
    let (dir, rename) = match (is_dir, p.parent(), p.file_name()) {
        (true, _, _) => (path.to_string(), None),
        (false, Some(parent), Some(name)) => {
            (parent.to_string_lossy().into_owned(), Some(name.to_owned()))
        }
        _ => return Err(CopyError::NotADirectory(path.into())),
    };
    open_in(&root, id, &dir, OFlags::DIRECTORY | OFlags::PATH, false)
        .map_err(|_| CopyError::NotADirectory(dir.clone()))?;
    Ok(Dest {
        root,
        id: id.into(),
        dir,
        rename,
    })
}

/// The entry's path below the destination, checked: no `..`, not absolute.
fn entry_path(raw: &Path, rename: Option<&std::ffi::OsStr>) -> Result<PathBuf, CopyError> {
    let mut out = PathBuf::new();
    for (i, c) in raw
        .components()
        .filter(|c| *c != Component::CurDir)
        .enumerate()
    {
        match c {
            Component::Normal(n) if i == 0 && rename.is_some() => out.push(rename.unwrap_or(n)),
            Component::Normal(n) => out.push(n),
            _ => return Err(CopyError::EntryOutside(raw.display().to_string())),
        }
    }
    Ok(out)
}

/// Extracts the tar read from `input` at `dest`.
pub fn extract(dest: &Dest, input: impl Read) -> Result<usize, CopyError> {
    let mut archive = tar::Archive::new(input);
    let mut count = 0;
    for entry in archive.entries().map_err(CopyError::Archive)? {
        let mut entry = entry.map_err(CopyError::Archive)?;
        let raw = entry.path().map_err(CopyError::Archive)?.into_owned();
        let rel = entry_path(&raw, dest.rename.as_deref())?;
        let (Some(parent), Some(name)) = (rel.parent(), rel.file_name()) else {
            continue; // "." itself: the destination exists.
        };
        let shown = raw.display().to_string();
        let fail = |source: std::io::Error| CopyError::Entry {
            path: shown.clone(),
            source,
        };
        // The parent resolved from the container's root, so a link the
        // container (or an earlier entry) made points inside it.
        let parent_path = Path::new(&dest.dir).join(parent);
        let dir = open_in(
            &dest.root,
            &dest.id,
            &parent_path.to_string_lossy(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            false,
        )?;
        let header = entry.header();
        let mode = Mode::from_raw_mode(header.mode().map_err(fail)? & 0o7777);
        let owner = (
            header
                .uid()
                .ok()
                .map(|u| rustix::fs::Uid::from_raw(u as u32)),
            header
                .gid()
                .ok()
                .map(|g| rustix::fs::Gid::from_raw(g as u32)),
        );
        match header.entry_type() {
            tar::EntryType::Directory => {
                match rustix::fs::mkdirat(&dir, name, mode) {
                    Ok(()) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(fail(e.into())),
                }
                let made = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| fail(e.into()))?;
                let _ = rustix::fs::fchown(&made, owner.0, owner.1);
                let _ = rustix::fs::fchmod(&made, mode);
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                // O_NOFOLLOW: a link at the name is refused, not written through.
                let fd = rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::TRUNC
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    mode,
                )
                .map_err(|e| fail(e.into()))?;
                let mut file = File::from(fd);
                std::io::copy(&mut entry, &mut file).map_err(fail)?;
                let _ = rustix::fs::fchown(file.as_fd(), owner.0, owner.1);
                let _ = rustix::fs::fchmod(file.as_fd(), mode);
            }
            tar::EntryType::Symlink => {
                let target = entry
                    .link_name()
                    .map_err(fail)?
                    .ok_or_else(|| CopyError::EntryType(shown.clone()))?
                    .into_owned();
                if rustix::fs::symlinkat(&target, &dir, name) == Err(rustix::io::Errno::EXIST) {
                    rustix::fs::unlinkat(&dir, name, AtFlags::empty())
                        .map_err(|e| fail(e.into()))?;
                    rustix::fs::symlinkat(&target, &dir, name).map_err(|e| fail(e.into()))?;
                }
            }
            _ => return Err(CopyError::EntryType(shown)),
        }
        count += 1;
    }
    Ok(count)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_stay_below_the_destination() {
        let p = |s: &str| entry_path(Path::new(s), None);
        assert_eq!(p("./a/b").unwrap(), PathBuf::from("a/b"));
        assert!(p("../etc/passwd").is_err());
        assert!(p("a/../../x").is_err());
        assert!(p("/etc/passwd").is_err());
        let renamed = entry_path(Path::new("f/x"), Some(std::ffi::OsStr::new("g"))).unwrap();
        assert_eq!(renamed, PathBuf::from("g/x"));
        assert!(check_path("rel").is_err());
        assert!(check_path("/ok").is_ok());
    }
}
