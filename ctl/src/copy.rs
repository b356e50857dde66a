//! `berthctl cp SRC DEST`, one side `CONTAINER:PATH` (podman's form), `-`
//! for a tar on stdin/stdout. berthd does the container's side (tar streams
//! over a pipe, paths resolved inside the container's root); here, the
//! host's side: a tar of the host path, or the archive unpacked with the tar
//! crate's `unpack_in`, which keeps every entry (and every link an earlier
//! entry made) below the destination — the archive comes from the container,
//! which must not write outside it on the host.

use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use crate::{manager, Failed, Result};

/// `ID:PATH` → Some((ID, PATH)); a host path (`./a:b`, `/x:y`) → None.
pub fn container_side(arg: &str) -> Option<(&str, &str)> {
    let (id, path) = arg.split_once(':')?;
    match !id.is_empty() && !id.contains('/') && !id.starts_with('.') {
        true => Some((id, path)),
        false => None,
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd)> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Failed::new(format!("pipe: {e}")))
}

pub fn cp(src: &str, dest: &str) -> Result<u8> {
    match (container_side(src), container_side(dest)) {
        (Some((id, path)), None) => copy_out(id, &absolute(path), dest),
        (None, Some((id, path))) => copy_in(src, id, &absolute(path)),
        (Some(_), Some(_)) => Err(Failed::new(
            "copy between two containers: go through the host",
        )),
        (None, None) => Err(Failed::new(
            "one side must be CONTAINER:PATH (the other a host path or -)",
        )),
    }
}

/// A container path as berthd takes it (podman reads relative ones from /).
fn absolute(path: &str) -> String {
    match path.starts_with('/') {
        true => path.to_string(),
        false => format!("/{path}"),
    }
}

fn copy_out(id: &str, path: &str, dest: &str) -> Result<u8> {
    let m = manager()?;
    let fd: OwnedFd = m.copy_from_container(id, path)?.into();
    let mut archive = File::from(fd);
    if dest == "-" {
        std::io::copy(&mut archive, &mut std::io::stdout().lock())
            .map_err(|e| Failed::new(format!("writing the archive: {e}")))?;
        return Ok(0);
    }
    let dest = Path::new(dest);
    let mut unpack = |into: &Path| {
        tar::Archive::new(&mut archive)
            .unpack(into)
            .map_err(|e| Failed::new(format!("unpacking into {}: {e}", into.display())))
    };
    if dest.is_dir() {
        unpack(dest)?;
        return Ok(0);
    }
    // A new name: unpacked beside it first, then renamed into place.
    let parent = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let staging = parent.join(format!(".berthctl-cp-{}", std::process::id()));
    std::fs::create_dir(&staging)
        .map_err(|e| Failed::new(format!("{}: {e}", staging.display())))?;
    let name = Path::new(path)
        .file_name()
        .map_or_else(|| ".".into(), PathBuf::from);
    let moved = unpack(&staging).and_then(|()| {
        std::fs::rename(staging.join(&name), dest)
            .map_err(|e| Failed::new(format!("{}: {e}", dest.display())))
    });
    let _ = std::fs::remove_dir_all(&staging);
    moved.map(|()| 0)
}

fn copy_in(src: &str, id: &str, path: &str) -> Result<u8> {
    let m = manager()?;
    let (read, write) = pipe()?;
    let writer = match src {
        "-" => std::thread::spawn(move || -> std::io::Result<()> {
            std::io::copy(&mut std::io::stdin().lock(), &mut File::from(write)).map(drop)
        }),
        _ => {
            let src = PathBuf::from(src);
            let meta = std::fs::symlink_metadata(&src)
                .map_err(|e| Failed::new(format!("{}: {e}", src.display())))?;
            let name = src
                .file_name()
                .map_or_else(|| PathBuf::from("."), PathBuf::from);
            std::thread::spawn(move || -> std::io::Result<()> {
                let mut tar = tar::Builder::new(File::from(write));
                // The host's links are copied as links, not followed.
                tar.follow_symlinks(false);
                match meta.is_dir() {
                    true => tar.append_dir_all(&name, &src)?,
                    false => tar.append_path_with_name(&src, &name)?,
                }
                tar.finish()
            })
        }
    };
    let reply = m.copy_to_container(id, path, read.as_fd().into());
    drop(read);
    let written = writer.join();
    reply?;
    match written {
        Ok(Ok(())) => Ok(0),
        Ok(Err(e)) => Err(Failed::new(format!("{src}: {e}"))),
        Err(_) => Err(Failed::new(format!("{src}: the archive writer failed"))),
    }
}

/// `berthctl export ID`: the tar to FILE, or to stdout when it is not a
/// terminal (podman's rule).
pub fn export(id: &str, output: Option<&Path>) -> Result<u8> {
    use std::io::IsTerminal;
    if output.is_none() && std::io::stdout().is_terminal() {
        return Err(Failed::new(
            "refusing to write a tar to a terminal: use -o FILE or a redirect",
        ));
    }
    let m = manager()?;
    let fd: OwnedFd = m.export_container(id)?.into();
    let mut archive = File::from(fd);
    let written = match output {
        Some(path) => File::create(path)
            .and_then(|mut f| std::io::copy(&mut archive, &mut f))
            .map_err(|e| Failed::new(format!("{}: {e}", path.display()))),
        None => std::io::copy(&mut archive, &mut std::io::stdout().lock())
            .map_err(|e| Failed::new(format!("writing the archive: {e}"))),
    };
    written.map(|_| 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sides_as_podman() {
        assert_eq!(
            container_side("web:/etc/hosts"),
            Some(("web", "/etc/hosts"))
        );
        assert_eq!(container_side("web:tmp"), Some(("web", "tmp")));
        assert_eq!(container_side("./a:b"), None);
        assert_eq!(container_side("/x:y"), None);
        assert_eq!(container_side("plain"), None);
        assert_eq!(absolute("tmp/x"), "/tmp/x");
    }
}
