//! Network namespaces pinned to files (as `ip netns add` does): a new netns
//! bind-mounted onto an empty file under /run/berth/netns, so it outlives
//! every process in it — CNI DEL can run after the container died, and a
//! pod's namespace needs no pause process.
//!
//! The namespace is made on a thread of its own that ends right after: a
//! thread's netns is its own (unshare(CLONE_NEWNET) is allowed in a threaded
//! process), so no other thread of berthd ever runs in it.

use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    #[error("cannot create the network namespace file {}: {source}", .path.display())]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create a network namespace: {0}")]
    Unshare(nix::Error),
    #[error("cannot pin the network namespace at {}: {source}", .path.display())]
    Mount { path: PathBuf, source: nix::Error },
    #[error("cannot bring up lo in the new network namespace: {0}")]
    Loopback(std::io::Error),
    #[error("the network namespace thread died")]
    Thread,
}

/// Creates a network namespace pinned at `path` (which must not exist), with
/// `lo` up. On failure nothing is left at `path`.
pub fn create(path: &Path) -> Result<(), NetnsError> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| NetnsError::File {
            path: dir.to_owned(),
            source,
        })?;
    }
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o444)
        .open(path)
        .map_err(|source| NetnsError::File {
            path: path.to_owned(),
            source,
        })?;
    let target = path.to_owned();
    let made = std::thread::spawn(move || pin_new(&target))
        .join()
        .unwrap_or(Err(NetnsError::Thread));
    if made.is_err() {
        let _ = remove(path);
    }
    made
}

/// On a thread that ends after: unshare, bring lo up, bind our netns.
fn pin_new(path: &Path) -> Result<(), NetnsError> {
    unshare(CloneFlags::CLONE_NEWNET).map_err(NetnsError::Unshare)?;
    crate::link::set_up("lo", true).map_err(NetnsError::Loopback)?;
    // /proc/thread-self: this thread's namespace, not the process leader's.
    mount(
        Some("/proc/thread-self/ns/net"),
        path,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
    .map_err(|source| NetnsError::Mount {
        path: path.to_owned(),
        source,
    })
}

/// Unpins and removes the namespace file at `path` (gone already: fine).
/// The namespace itself ends when its last process does.
pub fn remove(path: &Path) -> std::io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a file left by a crash before the bind).
        Ok(()) | Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Whether `path` holds a pinned namespace (an nsfs mount, not a bare file).
pub fn is_pinned(path: &Path) -> bool {
    nix::sys::statfs::statfs(path)
        .map(|s| s.filesystem_type() == nix::sys::statfs::NSFS_MAGIC)
        .unwrap_or(false)
}

/// The files in `dir` (namespaces, pinned or left half-made).
pub fn list(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_pins_and_remove_unpins() {
        if !nix::unistd::geteuid().is_root() {
            println!("SKIP create_pins_and_remove_unpins: needs root");
            return;
        }
        let dir = std::env::temp_dir().join(format!("berth-netns-{}", std::process::id()));
        let p = dir.join("a");
        create(&p).unwrap();
        assert!(is_pinned(&p));
        // Not our own namespace.
        let ours = std::fs::metadata("/proc/self/ns/net").unwrap();
        let pinned = std::fs::metadata(&p).unwrap();
        use std::os::unix::fs::MetadataExt;
        assert_ne!(ours.ino(), pinned.ino());
        assert!(matches!(create(&p), Err(NetnsError::File { .. })));
        remove(&p).unwrap();
        assert!(!p.exists());
        remove(&p).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
