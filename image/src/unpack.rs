//! Unpacking one layer tar into an empty directory, as an overlayfs lower dir.
//!
//! - Whiteouts: `.wh.NAME` becomes a character device 0:0 at NAME; an opaque
//!   marker `.wh..wh..opq` sets `trusted.overlay.opaque=y` on its directory;
//!   other `.wh..wh.*` entries (aufs bookkeeping) are skipped.
//! - Regular files, directories, symlinks, hardlinks, fifos and device nodes
//!   keep owner, mode (with setuid/setgid/sticky), mtime and xattrs (PAX
//!   `SCHILY.xattr.*`; `trusted.overlay.*` from a layer is dropped: only
//!   berth's own whiteout conversion may set it).
//! - Refused: an entry or hardlink target with a `..` component
//!   (`PathTraversal`) or an absolute name (`AbsolutePath`), and any entry whose
//!   path goes through a symlink or a non-directory (`SymlinkInPath`,
//!   `NotADirectory`): the unpacker never follows a link it or the layer made.
//!   Nothing is ever written outside `dest`.
//!
//! The caller unpacks into a fresh private temporary dir and renames it into
//! place on success, so a failed layer leaves nothing half-unpacked.

use std::ffi::CString;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Component, Path, PathBuf};

use flate2::read::MultiGzDecoder;
use tar::EntryType;

use crate::digest::{Digest, HashingReader};
use crate::oci::Compression;

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("layer entry {entry:?} climbs out of the root with '..'")]
    PathTraversal { entry: String },
    #[error("layer entry {entry:?} has an absolute path")]
    AbsolutePath { entry: String },
    #[error("layer entry {entry:?} would be written through the symlink {component:?}")]
    SymlinkInPath { entry: String, component: String },
    #[error("layer entry {entry:?}: {component:?} is not a directory")]
    NotADirectory { entry: String, component: String },
    #[error("layer entry {entry:?} is a hardlink to {target:?}, which is not in the image")]
    HardlinkTarget { entry: String, target: String },
    #[error("layer entry {entry:?}: bad whiteout")]
    BadWhiteout { entry: String },
    #[error("layer entry {entry:?}: unsupported tar entry type {kind}")]
    UnsupportedEntry { entry: String, kind: String },
    #[error("{0} compressed layers are not supported")]
    UnsupportedCompression(&'static str),
    #[error("layer tar is truncated: {0}")]
    Truncated(io::Error),
    #[error("layer tar is corrupt: {0}")]
    Corrupt(io::Error),
    #[error("layer tar has digest {actual}, the image config says {expected}")]
    DiffIdMismatch { expected: Digest, actual: Digest },
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// A read error of the layer stream: truncated or corrupt.
fn read_err(e: io::Error) -> UnpackError {
    match e.kind() {
        io::ErrorKind::UnexpectedEof => UnpackError::Truncated(e),
        _ => UnpackError::Corrupt(e),
    }
}

/// Remembers whether its reader reached the end: a tar error after the end
/// of the stream means the tar was cut short (the tar crate reports that as
/// "unexpected EOF during skip" and the like, of kind Other).
pub(crate) struct EofReader<R> {
    inner: R,
    hit: std::rc::Rc<std::cell::Cell<bool>>,
}

impl<R: Read> EofReader<R> {
    pub(crate) fn new(inner: R) -> (Self, std::rc::Rc<std::cell::Cell<bool>>) {
        let hit = std::rc::Rc::new(std::cell::Cell::new(false));
        (
            EofReader {
                inner,
                hit: hit.clone(),
            },
            hit,
        )
    }
}

impl<R: Read> Read for EofReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 && !buf.is_empty() {
            self.hit.set(true);
        }
        Ok(n)
    }
}

/// Classifies a read error of a stream wrapped in an [`EofReader`].
pub(crate) fn stream_err(e: io::Error, at_eof: bool) -> UnpackError {
    if at_eof {
        UnpackError::Truncated(e)
    } else {
        read_err(e)
    }
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> UnpackError + 'a {
    move |source| UnpackError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct Unpacked {
    /// sha256 of the uncompressed tar.
    pub diff_id: Digest,
    /// Bytes of the uncompressed tar.
    pub size: u64,
    pub entries: u64,
}

/// Unpacks the layer in `reader` (compressed as `compression`) into `dest`, an
/// existing empty directory. `lowers` are the unpacked layers below, top
/// first: a hardlink whose target is only there gets a copy of it. With
/// `expected`, the uncompressed tar must have that digest.
pub fn unpack_layer(
    reader: impl Read,
    compression: Compression,
    dest: &Path,
    lowers: &[PathBuf],
    expected: Option<&Digest>,
) -> Result<Unpacked, UnpackError> {
    let reader = BufReader::with_capacity(256 * 1024, reader);
    let plain: Box<dyn Read> = match compression {
        Compression::None => Box::new(reader),
        Compression::Gzip => Box::new(MultiGzDecoder::new(reader)),
        Compression::Zstd => return Err(UnpackError::UnsupportedCompression("zstd")),
    };
    let (plain, eof) = EofReader::new(plain);
    let mut archive = tar::Archive::new(HashingReader::new(plain));
    let mut dirs: Vec<(PathBuf, Meta)> = Vec::new();
    let mut entries = 0u64;
    let result = (|| {
        for entry in archive.entries()? {
            let mut entry = entry?;
            entries += 1;
            if let Some(d) = unpack_entry(&mut entry, dest, lowers).map_err(Failed::Unpack)? {
                dirs.push(d);
            }
        }
        Ok::<_, Failed>(())
    })();
    let result = result.and_then(|()| Ok(archive.into_inner().finish()?));
    let (diff_id, size) = result.map_err(|f| match f {
        Failed::Read(e) => stream_err(e, eof.get()),
        Failed::Unpack(UnpackError::Truncated(e) | UnpackError::Corrupt(e)) => {
            stream_err(e, eof.get())
        }
        Failed::Unpack(u) => u,
    })?;
    if let Some(want) = expected {
        if want != &diff_id {
            return Err(UnpackError::DiffIdMismatch {
                expected: want.clone(),
                actual: diff_id,
            });
        }
    }
    // Directories last: creating their children changed their mtimes. A
    // later entry may have replaced a directory (or one of its ancestors)
    // with a symlink: chmod follows links, so only what is still a real
    // directory on a symlink-free path is touched.
    for (rel, meta) in dirs.iter().rev() {
        let path = dest.join(rel);
        if ensure_parents(dest, rel, false)?
            && fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir())
        {
            meta.apply_mode_and_time(&path)?;
        }
    }
    Ok(Unpacked {
        diff_id,
        size,
        entries,
    })
}

/// A read error (classified once we know whether the stream ended) or any
/// other unpack error.
enum Failed {
    Read(io::Error),
    Unpack(UnpackError),
}

impl From<io::Error> for Failed {
    fn from(e: io::Error) -> Self {
        Failed::Read(e)
    }
}

/// Owner, mode, mtime and xattrs of an entry.
struct Meta {
    uid: u32,
    gid: u32,
    mode: u32,
    mtime: u64,
    xattrs: Vec<(CString, Vec<u8>)>,
}

fn cpath(p: &Path) -> Result<CString, UnpackError> {
    CString::new(p.as_os_str().as_bytes()).map_err(|_| UnpackError::Io {
        what: "path with a NUL byte",
        path: p.to_owned(),
        source: io::Error::from(io::ErrorKind::InvalidInput),
    })
}

fn cvt(r: libc::c_int) -> io::Result<()> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<R>) -> Result<Meta, UnpackError> {
        let h = entry.header();
        let num = |v: io::Result<u64>| v.map_err(read_err);
        let mut meta = Meta {
            uid: num(h.uid())? as u32,
            gid: num(h.gid())? as u32,
            mode: num(h.mode().map(u64::from))? as u32 & 0o7777,
            mtime: num(h.mtime())?,
            xattrs: Vec::new(),
        };
        if let Some(pax) = entry.pax_extensions().map_err(read_err)? {
            for ext in pax {
                let ext = ext.map_err(read_err)?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                let parse = || {
                    std::str::from_utf8(value)
                        .ok()?
                        .split('.')
                        .next()?
                        .parse()
                        .ok()
                };
                match key {
                    "uid" => meta.uid = parse().unwrap_or(meta.uid),
                    "gid" => meta.gid = parse().unwrap_or(meta.gid),
                    "mtime" => meta.mtime = parse().map_or(meta.mtime, u64::from),
                    k => {
                        if let Some(name) = k.strip_prefix("SCHILY.xattr.") {
                            if name.starts_with("trusted.overlay.") {
                                continue;
                            }
                            if let Ok(c) = CString::new(name) {
                                meta.xattrs.push((c, value.to_vec()));
                            }
                        }
                    }
                }
            }
        }
        Ok(meta)
    }

    /// lchown + xattrs (before the mode: chown clears setuid bits).
    fn apply_owner_and_xattrs(&self, path: &Path) -> Result<(), UnpackError> {
        let c = cpath(path)?;
        // SAFETY: c is a valid NUL-terminated path; lchown does not follow links.
        cvt(unsafe { libc::lchown(c.as_ptr(), self.uid, self.gid) })
            .map_err(io_at("cannot chown", path))?;
        for (name, value) in &self.xattrs {
            // SAFETY: valid C strings and a buffer of value.len() bytes.
            let r = unsafe {
                libc::lsetxattr(
                    c.as_ptr(),
                    name.as_ptr(),
                    value.as_ptr().cast(),
                    value.len(),
                    0,
                )
            };
            cvt(r).map_err(io_at("cannot set an xattr on", path))?;
        }
        Ok(())
    }

    fn apply_mode_and_time(&self, path: &Path) -> Result<(), UnpackError> {
        fs::set_permissions(path, fs::Permissions::from_mode(self.mode))
            .map_err(io_at("cannot chmod", path))?;
        self.apply_time(path)
    }

    fn apply_time(&self, path: &Path) -> Result<(), UnpackError> {
        let c = cpath(path)?;
        let ts = libc::timespec {
            tv_sec: self.mtime.min(i64::MAX as u64) as libc::time_t,
            tv_nsec: 0,
        };
        let times = [ts, ts];
        // SAFETY: valid path and a two-element timespec array.
        let r = unsafe {
            libc::utimensat(
                libc::AT_FDCWD,
                c.as_ptr(),
                times.as_ptr(),
                libc::AT_SYMLINK_NOFOLLOW,
            )
        };
        cvt(r).map_err(io_at("cannot set the mtime of", path))
    }
}

/// The entry's path made relative and checked: no `..`, not absolute.
/// Empty for the root itself (`./`).
pub fn clean_path(raw: &Path) -> Result<PathBuf, UnpackError> {
    let show = || raw.to_string_lossy().into_owned();
    let mut out = PathBuf::new();
    for c in raw.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::ParentDir => return Err(UnpackError::PathTraversal { entry: show() }),
            Component::RootDir | Component::Prefix(_) => {
                return Err(UnpackError::AbsolutePath { entry: show() })
            }
        }
    }
    Ok(out)
}

/// Makes sure every ancestor of `rel` under `root` is a real directory
/// (creating missing ones 0755 root:root); never follows a symlink.
fn ensure_parents(root: &Path, rel: &Path, create: bool) -> Result<bool, UnpackError> {
    let mut cur = root.to_path_buf();
    let Some(parent) = rel.parent() else {
        return Ok(true);
    };
    for c in parent.components() {
        cur.push(c);
        match fs::symlink_metadata(&cur) {
            Ok(m) if m.is_dir() => {}
            Ok(m) => {
                let entry = rel.to_string_lossy().into_owned();
                let component = cur.strip_prefix(root).unwrap_or(&cur);
                let component = component.to_string_lossy().into_owned();
                return Err(if m.file_type().is_symlink() {
                    UnpackError::SymlinkInPath { entry, component }
                } else {
                    UnpackError::NotADirectory { entry, component }
                });
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound && create => {
                fs::create_dir(&cur).map_err(io_at("cannot create", &cur))?;
                fs::set_permissions(&cur, fs::Permissions::from_mode(0o755))
                    .map_err(io_at("cannot chmod", &cur))?;
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(io_at("cannot stat", &cur)(e)),
        }
    }
    Ok(true)
}

/// Removes whatever is at `path` (not following symlinks), if anything.
fn clear(path: &Path, keep_dir: bool) -> Result<bool, UnpackError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.is_dir() => {
            if keep_dir {
                return Ok(true);
            }
            fs::remove_dir_all(path).map_err(io_at("cannot replace", path))?;
        }
        Ok(_) => fs::remove_file(path).map_err(io_at("cannot replace", path))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(io_at("cannot stat", path)(e)),
    }
    Ok(false)
}

fn mknod(
    path: &Path,
    kind: libc::mode_t,
    mode: u32,
    major: u32,
    minor: u32,
) -> Result<(), UnpackError> {
    let c = cpath(path)?;
    let dev = libc::makedev(major, minor);
    // SAFETY: valid path; mknod creates a node, never follows a final symlink.
    cvt(unsafe { libc::mknod(c.as_ptr(), kind | (mode & 0o7777), dev) })
        .map_err(io_at("cannot mknod", path))
}

const WHITEOUT: &str = ".wh.";
const OPAQUE: &str = ".wh..wh..opq";

/// Unpacks one entry; returns a directory whose mode and mtime are set last.
fn unpack_entry<R: Read>(
    entry: &mut tar::Entry<R>,
    dest: &Path,
    lowers: &[PathBuf],
) -> Result<Option<(PathBuf, Meta)>, UnpackError> {
    let raw = entry.path().map_err(read_err)?.into_owned();
    let rel = clean_path(&raw)?;
    let kind = entry.header().entry_type();
    if rel.as_os_str().is_empty() || matches!(kind, EntryType::XGlobalHeader) {
        return Ok(None); // the root dir itself keeps the snapshot's own metadata
    }
    let name = rel
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    ensure_parents(dest, &rel, true)?;
    let meta = Meta::read(entry)?;
    let path = dest.join(&rel);

    if let Some(rest) = name.strip_prefix(WHITEOUT) {
        let parent = path.parent().unwrap_or(dest);
        if name == OPAQUE {
            let c = cpath(parent)?;
            // SAFETY: valid C strings, a 1-byte value.
            let r = unsafe {
                libc::lsetxattr(
                    c.as_ptr(),
                    c"trusted.overlay.opaque".as_ptr(),
                    b"y".as_ptr().cast(),
                    1,
                    0,
                )
            };
            cvt(r).map_err(io_at("cannot mark opaque", parent))?;
            return Ok(None);
        }
        if rest.starts_with(WHITEOUT) {
            return Ok(None); // .wh..wh.plnk and other aufs metadata
        }
        if rest.is_empty() || rest == "." || rest == ".." || rest.contains('/') {
            return Err(UnpackError::BadWhiteout {
                entry: raw.to_string_lossy().into_owned(),
            });
        }
        let target = parent.join(rest);
        clear(&target, false)?;
        mknod(&target, libc::S_IFCHR, 0, 0, 0)?;
        meta.apply_owner_and_xattrs(&target)?;
        return Ok(None);
    }

    match kind {
        EntryType::Directory => {
            if !clear(&path, true)? {
                fs::create_dir(&path).map_err(io_at("cannot create", &path))?;
            }
            meta.apply_owner_and_xattrs(&path)?;
            return Ok(Some((rel, meta)));
        }
        EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
            clear(&path, false)?;
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .custom_flags(libc::O_NOFOLLOW)
                .mode(0o600)
                .open(&path)
                .map_err(io_at("cannot create", &path))?;
            copy_data(entry, &mut f, &path)?;
            drop(f);
            meta.apply_owner_and_xattrs(&path)?;
            meta.apply_mode_and_time(&path)?;
        }
        EntryType::Symlink => {
            let target = entry.link_name().map_err(read_err)?.ok_or_else(|| {
                UnpackError::UnsupportedEntry {
                    entry: raw.to_string_lossy().into_owned(),
                    kind: "symlink without a target".into(),
                }
            })?;
            clear(&path, false)?;
            // The target is stored as is: it is resolved inside the container's
            // root at run time, never by the unpacker.
            std::os::unix::fs::symlink(&target, &path).map_err(io_at("cannot symlink", &path))?;
            meta.apply_owner_and_xattrs(&path)?;
            meta.apply_time(&path)?;
        }
        EntryType::Link => {
            let target_raw = entry
                .link_name()
                .map_err(read_err)?
                .map(|t| t.into_owned())
                .unwrap_or_default();
            let target = clean_path(&target_raw)?;
            let missing = || UnpackError::HardlinkTarget {
                entry: raw.to_string_lossy().into_owned(),
                target: target_raw.to_string_lossy().into_owned(),
            };
            if target.as_os_str().is_empty() || target == rel {
                return Err(missing());
            }
            let src = dest.join(&target);
            let here = ensure_parents(dest, &target, false)?
                && fs::symlink_metadata(&src).is_ok_and(|m| !m.is_dir());
            clear(&path, false)?;
            if here {
                fs::hard_link(&src, &path).map_err(io_at("cannot hardlink", &path))?;
            } else {
                copy_from_lowers(lowers, &target, &path)?.ok_or_else(missing)?;
            }
        }
        EntryType::Char | EntryType::Block | EntryType::Fifo => {
            let h = entry.header();
            let (k, major, minor) = match kind {
                EntryType::Fifo => (libc::S_IFIFO, 0, 0),
                _ => (
                    if kind == EntryType::Char {
                        libc::S_IFCHR
                    } else {
                        libc::S_IFBLK
                    },
                    h.device_major().map_err(read_err)?.unwrap_or(0),
                    h.device_minor().map_err(read_err)?.unwrap_or(0),
                ),
            };
            clear(&path, false)?;
            mknod(&path, k, 0o600, major, minor)?;
            meta.apply_owner_and_xattrs(&path)?;
            meta.apply_mode_and_time(&path)?;
        }
        other => {
            return Err(UnpackError::UnsupportedEntry {
                entry: raw.to_string_lossy().into_owned(),
                kind: format!("{other:?}"),
            })
        }
    }
    Ok(None)
}

fn copy_data(r: &mut impl Read, f: &mut File, path: &Path) -> Result<(), UnpackError> {
    let mut buf = vec![0u8; 128 * 1024];
    loop {
        let n = r.read(&mut buf).map_err(read_err)?;
        if n == 0 {
            return Ok(());
        }
        f.write_all(&buf[..n])
            .map_err(io_at("cannot write", path))?;
    }
}

/// A hardlink to a file of a lower layer: overlay cannot link across layers,
/// so the file is copied (content, owner, mode, mtime). None if no lower has it.
fn copy_from_lowers(
    lowers: &[PathBuf],
    target: &Path,
    dest: &Path,
) -> Result<Option<()>, UnpackError> {
    for lower in lowers {
        if !ensure_parents(lower, target, false).unwrap_or(false) {
            continue;
        }
        let src = lower.join(target);
        let Ok(m) = fs::symlink_metadata(&src) else {
            continue;
        };
        if m.file_type().is_char_device() && m.rdev() == 0 {
            return Ok(None); // whited out in that layer
        }
        if !m.is_file() {
            continue;
        }
        let mut from = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&src)
            .map_err(io_at("cannot open", &src))?;
        let mut to = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(libc::O_NOFOLLOW)
            .mode(0o600)
            .open(dest)
            .map_err(io_at("cannot create", dest))?;
        io::copy(&mut from, &mut to).map_err(io_at("cannot copy into", dest))?;
        let meta = Meta {
            uid: m.uid(),
            gid: m.gid(),
            mode: m.mode() & 0o7777,
            mtime: u64::try_from(m.mtime()).unwrap_or(0),
            xattrs: Vec::new(),
        };
        meta.apply_owner_and_xattrs(dest)?;
        meta.apply_mode_and_time(dest)?;
        return Ok(Some(()));
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_paths_are_cleaned_or_refused() {
        let ok = |p: &str| clean_path(Path::new(p)).unwrap();
        assert_eq!(ok("./a/./b/"), Path::new("a/b"));
        assert_eq!(ok("a//b"), Path::new("a/b"));
        assert_eq!(ok("./"), Path::new(""));
        for bad in ["../x", "a/../../x", "a/.."] {
            assert!(
                matches!(
                    clean_path(Path::new(bad)),
                    Err(UnpackError::PathTraversal { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            clean_path(Path::new("/etc/passwd")),
            Err(UnpackError::AbsolutePath { .. })
        ));
        let err = unpack_layer(
            &b""[..],
            Compression::Zstd,
            Path::new("/nonexistent"),
            &[],
            None,
        )
        .unwrap_err();
        assert!(matches!(err, UnpackError::UnsupportedCompression("zstd")));
    }
}
