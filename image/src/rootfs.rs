//! A container's root filesystem: an overlay mount of the image's snapshots
//! (read-only lower dirs) under a writable upper dir of the container's own,
//! in `<root>/containers/<id>/{upper,work,rootfs}`.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

#[derive(Debug, thiserror::Error)]
pub enum RootfsError {
    #[error("container id {0:?}: use 1-128 characters of [A-Za-z0-9_.-], not starting with '.'")]
    BadId(String),
    #[error("overlayfs is not available: {0}")]
    NoOverlay(String),
    #[error("{} cannot be an overlay path (':', ',' or '\\\\' in it)", .0.display())]
    BadPath(PathBuf),
    #[error("the overlay options for {layers} layers are longer than a page ({len} bytes)")]
    TooManyLayers { layers: usize, len: usize },
    #[error("cannot mount the rootfs at {}: {source}", .path.display())]
    Mount { path: PathBuf, source: nix::Error },
    #[error(
        "cannot mount the rootfs: {} is on overlayfs, which cannot hold overlay upper \
         directories (berth inside another container?): put berth's state directory \
         (/var/lib/berth) on a filesystem of its own, e.g. a volume or bind mount of the \
         outer container, or a tmpfs",
        .0.display()
    )]
    UpperOnOverlay(PathBuf),
    #[error("cannot unmount {}: {source}", .path.display())]
    Unmount { path: PathBuf, source: nix::Error },
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

/// Where a container's rootfs lives.
#[derive(Debug, Clone, PartialEq)]
pub struct Rootfs {
    pub container: String,
    /// `<root>/containers/<id>`.
    pub dir: PathBuf,
    /// The lower dirs, bottom layer first (empty for an image without layers).
    pub lowers: Vec<PathBuf>,
}

pub fn check_id(id: &str) -> Result<(), RootfsError> {
    let ok = !id.is_empty()
        && id.len() <= 128
        && !id.starts_with('.')
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(RootfsError::BadId(id.to_owned()))
    }
}

impl Rootfs {
    /// The mount point: the OCI spec's root.path.
    pub fn path(&self) -> PathBuf {
        self.dir.join("rootfs")
    }
    pub fn upper(&self) -> PathBuf {
        self.dir.join("upper")
    }
    pub fn work(&self) -> PathBuf {
        self.dir.join("work")
    }
    /// The lower dir of an image without layers.
    fn empty(&self) -> PathBuf {
        self.dir.join("empty")
    }

    /// Creates the container's directories (upper 0755 like a root dir).
    pub fn create_dirs(&self) -> Result<(), RootfsError> {
        for d in [
            self.dir.clone(),
            self.upper(),
            self.work(),
            self.path(),
            self.empty(),
        ] {
            match fs::create_dir(&d) {
                Err(e) if e.kind() != io::ErrorKind::AlreadyExists => {
                    return Err(RootfsError::Io {
                        what: "cannot create",
                        path: d,
                        source: e,
                    })
                }
                _ => {}
            }
        }
        // The merged root takes the upper dir's mode: give it the image's
        // (the top layer's root), not what mkdir left under the caller's
        // umask (berthd runs with 0077, which would lock non-root users out
        // of the container's /).
        use std::os::unix::fs::PermissionsExt;
        let mode = self
            .lowers
            .last()
            .and_then(|top| fs::metadata(top).ok())
            .map_or(0o755, |m| m.permissions().mode() & 0o7777);
        let upper = self.upper();
        fs::set_permissions(&upper, fs::Permissions::from_mode(mode)).map_err(|e| {
            RootfsError::Io {
                what: "cannot set the mode of",
                path: upper,
                source: e,
            }
        })?;
        Ok(())
    }

    /// The overlay mount options: lowerdir is top layer first.
    pub fn options(&self) -> Result<String, RootfsError> {
        let mut lowers: Vec<PathBuf> = self.lowers.iter().rev().cloned().collect();
        if lowers.is_empty() {
            lowers.push(self.empty());
        }
        let check = |p: &Path| -> Result<String, RootfsError> {
            let s = p.to_string_lossy();
            if s.contains([':', ',', '\\']) || p.to_str().is_none() {
                return Err(RootfsError::BadPath(p.to_owned()));
            }
            Ok(s.into_owned())
        };
        let lower = lowers
            .iter()
            .map(|p| check(p))
            .collect::<Result<Vec<_>, _>>()?;
        let opts = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.join(":"),
            check(&self.upper())?,
            check(&self.work())?
        );
        // The kernel copies mount data into one page.
        if opts.len() >= 4000 {
            return Err(RootfsError::TooManyLayers {
                layers: self.lowers.len(),
                len: opts.len(),
            });
        }
        Ok(opts)
    }

    /// Mounts the overlay at [`Rootfs::path`] unless something is mounted there.
    pub fn mount(&self) -> Result<PathBuf, RootfsError> {
        let target = self.path();
        if is_mounted(&target)? {
            return Ok(target);
        }
        overlay_available()?;
        self.create_dirs()?;
        let opts = self.options()?;
        mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::empty(),
            Some(opts.as_str()),
        )
        .map_err(|source| {
            // The kernel's EINVAL says no more than "bad options": name the
            // one cause a person can fix.
            if source == nix::Error::EINVAL && on_overlayfs(&self.dir) {
                return RootfsError::UpperOnOverlay(self.dir.clone());
            }
            RootfsError::Mount {
                path: target.clone(),
                source,
            }
        })?;
        Ok(target)
    }

    /// Unmounts the rootfs (lazily: a process still in it keeps its view);
    /// nothing to do if it is not mounted.
    pub fn unmount(&self) -> Result<(), RootfsError> {
        let target = self.path();
        while is_mounted(&target)? {
            umount2(&target, MntFlags::MNT_DETACH).map_err(|source| RootfsError::Unmount {
                path: target.clone(),
                source,
            })?;
        }
        Ok(())
    }

    /// Unmounts and deletes the container's directories.
    pub fn remove(&self) -> Result<(), RootfsError> {
        self.unmount()?;
        match fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(RootfsError::Io {
                what: "cannot remove",
                path: self.dir.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }
}

/// Whether `dir` is on an overlayfs (whose directories overlayfs refuses as
/// upper dirs).
fn on_overlayfs(dir: &Path) -> bool {
    nix::sys::statfs::statfs(dir)
        .is_ok_and(|s| s.filesystem_type() == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC)
}

/// Whether the kernel knows overlayfs (loaded or built in).
pub fn overlay_available() -> Result<(), RootfsError> {
    let fss = fs::read_to_string("/proc/filesystems")
        .map_err(|e| RootfsError::NoOverlay(e.to_string()))?;
    if fss
        .lines()
        .any(|l| l.split_whitespace().last() == Some("overlay"))
    {
        Ok(())
    } else {
        Err(RootfsError::NoOverlay("not in /proc/filesystems".into()))
    }
}

/// Decodes mountinfo's octal escapes (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() {
            let digits = std::str::from_utf8(&b[i + 1..i + 4]).unwrap_or("");
            if let Ok(v) = u8::from_str_radix(digits, 8) {
                out.push(v);
                i += 4;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether `path` is a mount point in this mount namespace.
pub fn is_mounted(path: &Path) -> Result<bool, RootfsError> {
    let canon = match path.canonicalize() {
        Ok(p) => p,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => {
            return Err(RootfsError::Io {
                what: "cannot resolve",
                path: path.to_owned(),
                source: e,
            })
        }
    };
    let info = fs::read_to_string("/proc/self/mountinfo").map_err(|e| RootfsError::Io {
        what: "cannot read",
        path: "/proc/self/mountinfo".into(),
        source: e,
    })?;
    let want = canon.to_string_lossy();
    Ok(info
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .any(|mp| unescape(mp) == want))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_options_and_escapes() {
        for ok in ["web", "a.b-c_1"] {
            check_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "a/b", ".hidden", &"x".repeat(129)] {
            assert!(check_id(bad).is_err(), "{bad}");
        }
        let r = Rootfs {
            container: "c".into(),
            dir: "/r/containers/c".into(),
            lowers: vec!["/r/snapshots/1/fs".into(), "/r/snapshots/2/fs".into()],
        };
        assert_eq!(
            r.options().unwrap(),
            "lowerdir=/r/snapshots/2/fs:/r/snapshots/1/fs,upperdir=/r/containers/c/upper,workdir=/r/containers/c/work"
        );
        let empty = Rootfs {
            lowers: vec![],
            ..r.clone()
        };
        assert!(empty
            .options()
            .unwrap()
            .starts_with("lowerdir=/r/containers/c/empty,"));
        let bad = Rootfs {
            lowers: vec!["/a:b".into()],
            ..r.clone()
        };
        assert!(matches!(bad.options(), Err(RootfsError::BadPath(_))));
        let many = Rootfs {
            lowers: vec!["/r/snapshots/123456/fs".into(); 300],
            ..r
        };
        assert!(matches!(
            many.options(),
            Err(RootfsError::TooManyLayers { .. })
        ));
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert!(is_mounted(Path::new("/proc")).unwrap());
        assert!(!is_mounted(Path::new("/nonexistent/x")).unwrap());
    }
}
