//! The bus side of `berthctl cp`: CopyFromContainer hands back the read end
//! of a pipe berthd writes a tar into; CopyToContainer reads a tar from the
//! fd it is given. The file work (copy.rs) runs on the blocking pool.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use crate::api::error::Result;
use crate::copy::{self, CopyError};
use crate::daemon::Daemon;
use crate::error::Error;
use crate::lifecycle::Status;

/// The container's root as a path to open: its init's root while it lives,
/// the rootfs of its spec once stopped.
async fn root_of(daemon: &Daemon, id: &str) -> Result<PathBuf> {
    let rec = daemon.get(id)?;
    let alive = rec.status != Status::Stopped
        && rec.pid != 0
        && crate::init_calls::process_start_time(rec.pid) == Some(rec.pid_start);
    if alive {
        return Ok(PathBuf::from(format!("/proc/{}/root", rec.pid)));
    }
    rootfs_of(daemon, id).await
}

/// The rootfs its spec names: the container's own files, without the
/// mounts made inside it (/proc, /dev, volumes), as podman export takes.
async fn rootfs_of(daemon: &Daemon, id: &str) -> Result<PathBuf> {
    let rec = daemon.get(id)?;
    let derived = daemon.bundles_dir.join(id);
    let dir = match derived.join("config.json").exists() {
        true => derived,
        false => PathBuf::from(&rec.bundle),
    };
    let spec = tokio::task::spawn_blocking(move || crate::init_calls::spec::load(&dir))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(|e| Error::FailedPrecondition(format!("container {id}: its bundle: {e}")))?;
    Ok(spec.rootfs)
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> std::result::Result<T, CopyError> + Send + 'static,
) -> Result<T> {
    Ok(tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Error::Internal(e.to_string()))?
        .map_err(Error::from)?)
}

pub async fn copy_from(daemon: &Daemon, id: &str, path: &str) -> Result<OwnedFd> {
    let root = root_of(daemon, id).await?;
    let (id, path) = (id.to_string(), path.to_string());
    let src = blocking(move || {
        let root = copy::open_root(&root)?;
        copy::open_source(&root, &id, &path)
    })
    .await?;
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::Internal(format!("pipe: {e}")))?;
    // The reader may stop early (EPIPE): the copy simply ends.
    tokio::task::spawn_blocking(move || {
        if let Err(e) = copy::write_tar(src, std::fs::File::from(write)) {
            tracing::debug!("copy out ended: {e}");
        }
    });
    Ok(read)
}

/// ExportContainer: a tar of the container's rootfs, as a pipe to read.
pub async fn export(daemon: &Daemon, id: &str) -> Result<OwnedFd> {
    let root = rootfs_of(daemon, id).await?;
    let id = id.to_string();
    let src = blocking(move || copy::open_source(&copy::open_root(&root)?, &id, "/")).await?;
    let (read, write) = rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC)
        .map_err(|e| Error::Internal(format!("pipe: {e}")))?;
    tokio::task::spawn_blocking(move || {
        if let Err(e) = copy::write_tar(src, std::fs::File::from(write)) {
            tracing::debug!("export ended: {e}");
        }
    });
    Ok(read)
}

/// Extracts the tar read from `fd` at `path`: the number of entries.
pub async fn copy_to(daemon: &Daemon, id: &str, path: &str, fd: OwnedFd) -> Result<u32> {
    let root = root_of(daemon, id).await?;
    let (id, path) = (id.to_string(), path.to_string());
    blocking(move || {
        let dest = copy::open_dest(copy::open_root(&root)?, &id, &path)?;
        copy::extract(&dest, std::fs::File::from(fd)).map(|n| n as u32)
    })
    .await
}

/// CommitContainer: the container's upper layer as image `name` (commit.rs);
/// the image's name as stored and its id.
pub async fn commit(daemon: &Daemon, id: &str, name: &str) -> Result<(String, String)> {
    let rec = daemon.get(id)?;
    if rec.image.is_empty() {
        return Err(Error::FailedPrecondition(format!(
            "container {id} was made from a bundle: commit takes a container made from an image"
        ))
        .into());
    }
    if name.is_empty() || name.len() > crate::images::MAX_NAME {
        return Err(Error::InvalidArgument(format!(
            "image name {:?}: 1-{} bytes",
            crate::daemon::brief(name),
            crate::images::MAX_NAME
        ))
        .into());
    }
    let (id, name) = (id.to_string(), name.to_string());
    // with_store's own error is the store's; commit's is the core's.
    let made: std::result::Result<berth_image::ImageRecord, Error> =
        crate::images::with_store::<_, Error>(&daemon.images, move |store| {
            Ok(crate::commit::commit(store, &id, &rec.image, &name))
        })
        .await?;
    let made = made?;
    Ok((made.name, made.config.to_string()))
}
