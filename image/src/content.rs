//! The content store: blobs by digest under `<root>/blobs/sha256/<hex>`.
//!
//! A blob is written to `<root>/ingest/` while its digest is computed, checked
//! against the digest (and size) it was announced with, fsynced, then renamed
//! into place: a blob file under blobs/ is always complete and verified. What
//! refers to a blob is recorded in the metadata store, not here.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::digest::{Digest, HashingWriter};

#[derive(Debug, thiserror::Error)]
pub enum ContentError {
    #[error("blob {expected}: content has digest {actual} (corrupted or wrong blob)")]
    DigestMismatch { expected: Digest, actual: Digest },
    #[error("blob {digest}: {actual} bytes, expected {expected}")]
    SizeMismatch {
        digest: Digest,
        expected: u64,
        actual: u64,
    },
    #[error("blob {0} is not in the content store")]
    NotFound(Digest),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ContentError + 'a {
    move |source| ContentError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

/// A file being written in the ingest dir; removed on drop unless committed.
pub struct Staged {
    path: PathBuf,
    pub digest: Digest,
    pub size: u64,
}

impl Staged {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

pub struct ContentStore {
    blobs: PathBuf,
    ingest: PathBuf,
}

static SEQ: AtomicU64 = AtomicU64::new(0);

/// A fresh name for a temporary file or dir (pid + counter: unique in the
/// process, and a stale one from a dead process is reclaimed by gc).
pub(crate) fn temp_name(prefix: &str) -> String {
    let n = SEQ.fetch_add(1, Ordering::Relaxed);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    format!("{prefix}-{}-{n}-{nanos:x}", std::process::id())
}

/// fsync of a directory, so a rename into it is durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

impl ContentStore {
    /// `root` is the image store's root: blobs/ and ingest/ are made under it.
    pub fn open(root: &Path) -> Result<ContentStore, ContentError> {
        let blobs = root.join("blobs/sha256");
        let ingest = root.join("ingest");
        for d in [&blobs, &ingest] {
            fs::create_dir_all(d).map_err(io_err("cannot create", d))?;
        }
        Ok(ContentStore { blobs, ingest })
    }

    pub fn path(&self, digest: &Digest) -> PathBuf {
        self.blobs.join(digest.hex())
    }

    pub fn contains(&self, digest: &Digest) -> bool {
        self.path(digest).is_file()
    }

    pub fn open_blob(&self, digest: &Digest) -> Result<File, ContentError> {
        File::open(self.path(digest)).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ContentError::NotFound(digest.clone()),
            _ => ContentError::Io {
                what: "cannot open blob",
                path: self.path(digest),
                source: e,
            },
        })
    }

    /// Reads a small blob (a manifest, index or config) whole; `limit` bytes at most.
    pub fn read_small(&self, digest: &Digest, limit: u64) -> Result<Vec<u8>, ContentError> {
        let mut buf = Vec::new();
        let path = self.path(digest);
        self.open_blob(digest)?
            .take(limit)
            .read_to_end(&mut buf)
            .map_err(io_err("cannot read blob", &path))?;
        Ok(buf)
    }

    /// The ingest directory (same filesystem as blobs/, so staged files rename in).
    pub fn ingest_dir(&self) -> &Path {
        &self.ingest
    }

    pub fn blobs_dir(&self) -> &Path {
        &self.blobs
    }

    /// Copies `reader` into a staged file, hashing it. With `max`, reading more
    /// than that many bytes stops with a SizeMismatch against `expected`.
    pub fn stage(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<Staged, ContentError> {
        let path = self.ingest.join(temp_name("blob"));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o644)
            .open(&path)
            .map_err(io_err("cannot create", &path))?;
        // The staged file is removed on any error from here on.
        let mut staged = Staged {
            path,
            digest: Digest::of(b""),
            size: 0,
        };
        let mut w = HashingWriter::new(BufWriter::with_capacity(256 * 1024, file));
        let copied = match expected {
            Some((_, size)) => io::copy(&mut reader.take(size.saturating_add(1)), &mut w),
            None => io::copy(reader, &mut w),
        };
        copied.map_err(io_err("cannot write", &staged.path))?;
        let (buf, digest, size) = w.finish();
        let file = buf
            .into_inner()
            .map_err(|e| e.into_error())
            .map_err(io_err("cannot write", &staged.path))?;
        if let Some((want, want_size)) = expected {
            if size != want_size {
                return Err(ContentError::SizeMismatch {
                    digest: want.clone(),
                    expected: want_size,
                    actual: size,
                });
            }
            if &digest != want {
                return Err(ContentError::DigestMismatch {
                    expected: want.clone(),
                    actual: digest,
                });
            }
        }
        file.sync_all()
            .map_err(io_err("cannot sync", &staged.path))?;
        staged.digest = digest;
        staged.size = size;
        Ok(staged)
    }

    /// Moves a staged (verified) file into blobs/. Returns whether the blob is
    /// new (false: an identical blob was already there).
    pub fn commit(&self, staged: Staged) -> Result<bool, ContentError> {
        let dest = self.path(&staged.digest);
        if dest.is_file() {
            return Ok(false); // `staged` is removed on drop
        }
        fs::rename(&staged.path, &dest).map_err(io_err("cannot store blob", &dest))?;
        sync_dir(&self.blobs).map_err(io_err("cannot sync", &self.blobs))?;
        Ok(true)
    }

    /// Moves a file downloaded elsewhere under the store root (same
    /// filesystem) into blobs/ after checking its digest and size by reading
    /// it. Returns whether the blob is new.
    pub fn adopt(&self, path: &Path, digest: &Digest, size: u64) -> Result<bool, ContentError> {
        let f = File::open(path).map_err(io_err("cannot open", path))?;
        let (actual, n) =
            crate::digest::HashingReader::new(io::BufReader::with_capacity(256 * 1024, f))
                .finish()
                .map_err(io_err("cannot read", path))?;
        if n != size {
            let _ = fs::remove_file(path);
            return Err(ContentError::SizeMismatch {
                digest: digest.clone(),
                expected: size,
                actual: n,
            });
        }
        if &actual != digest {
            let _ = fs::remove_file(path);
            return Err(ContentError::DigestMismatch {
                expected: digest.clone(),
                actual,
            });
        }
        let dest = self.path(digest);
        if dest.is_file() {
            let _ = fs::remove_file(path);
            return Ok(false);
        }
        File::open(path)
            .and_then(|f| f.sync_all())
            .map_err(io_err("cannot sync", path))?;
        fs::rename(path, &dest).map_err(io_err("cannot store blob", &dest))?;
        sync_dir(&self.blobs).map_err(io_err("cannot sync", &self.blobs))?;
        Ok(true)
    }

    /// Stage + commit: writes a blob from `reader`, verified against
    /// `expected` if given. Returns the digest, size and whether it is new.
    /// A blob already stored under the expected digest is not read again.
    pub fn ingest(
        &self,
        reader: &mut dyn Read,
        expected: Option<(&Digest, u64)>,
    ) -> Result<(Digest, u64, bool), ContentError> {
        if let Some((d, size)) = expected {
            if let Ok(m) = fs::metadata(self.path(d)) {
                if m.is_file() && m.len() == size {
                    return Ok((d.clone(), size, false));
                }
            }
        }
        let staged = self.stage(reader, expected)?;
        let (d, size) = (staged.digest.clone(), staged.size);
        let new = self.commit(staged)?;
        Ok((d, size, new))
    }

    /// Stores `data` (a manifest or config berth wrote).
    pub fn put_bytes(&self, data: &[u8]) -> Result<(Digest, bool), ContentError> {
        let (d, _, new) = self.ingest(&mut &data[..], None)?;
        Ok((d, new))
    }

    /// Removes a blob; false if it was not there.
    pub fn delete(&self, digest: &Digest) -> Result<bool, ContentError> {
        let p = self.path(digest);
        match fs::remove_file(&p) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("cannot remove", &p)(e)),
        }
    }

    /// Every blob on disk (names that are not digests are skipped).
    pub fn list(&self) -> Result<Vec<Digest>, ContentError> {
        let mut out = Vec::new();
        for e in fs::read_dir(&self.blobs).map_err(io_err("cannot list", &self.blobs))? {
            let e = e.map_err(io_err("cannot list", &self.blobs))?;
            if let Some(d) = e
                .file_name()
                .to_str()
                .and_then(|n| Digest::from_hex(n).ok())
            {
                out.push(d);
            }
        }
        out.sort();
        Ok(out)
    }

    /// Writes a blob's content to `w` (export).
    pub fn copy_to(&self, digest: &Digest, w: &mut dyn Write) -> Result<u64, ContentError> {
        let p = self.path(digest);
        let mut f = self.open_blob(digest)?;
        io::copy(&mut f, w).map_err(io_err("cannot copy blob", &p))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn tmp(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("berth-image-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn content_verifies_and_dedups() {
        let root = tmp("content");
        let cs = ContentStore::open(&root).unwrap();
        let d = Digest::of(b"hello");
        let (got, size, new) = cs.ingest(&mut &b"hello"[..], Some((&d, 5))).unwrap();
        assert_eq!((got, size, new), (d.clone(), 5, true));
        assert!(cs.contains(&d));
        assert!(!cs.ingest(&mut &b"hello"[..], Some((&d, 5))).unwrap().2);

        let other = Digest::of(b"other");
        let err = cs
            .ingest(&mut &b"hellO"[..], Some((&other, 5)))
            .unwrap_err();
        assert!(matches!(err, ContentError::DigestMismatch { .. }), "{err}");
        let err = cs
            .ingest(&mut &b"hello!"[..], Some((&other, 5)))
            .unwrap_err();
        assert!(
            matches!(err, ContentError::SizeMismatch { actual: 6, .. }),
            "{err}"
        );
        let err = cs.ingest(&mut &b"hell"[..], Some((&other, 5))).unwrap_err();
        assert!(
            matches!(err, ContentError::SizeMismatch { actual: 4, .. }),
            "{err}"
        );
        assert_eq!(cs.list().unwrap(), std::slice::from_ref(&d));
        assert_eq!(fs::read_dir(cs.ingest_dir()).unwrap().count(), 0);
        assert!(cs.delete(&d).unwrap());
        assert!(!cs.delete(&d).unwrap());
        assert!(matches!(cs.open_blob(&d), Err(ContentError::NotFound(_))));
        fs::remove_dir_all(&root).unwrap();
    }
}
