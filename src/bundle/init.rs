//! `init`: catatonit (podman's --init, a static reaper and signal
//! forwarder) as the container's pid 1, the command its child.
//!
//! The host's binary is never exposed to the container: a copy is written
//! into the container's own bundle directory and bound read-only at
//! [`INIT_PATH`], so even a process that could write to it would change
//! only that container's copy (the CVE-2019-5736 lesson; podman binds the
//! host's own file instead). The copy goes with the bundle directory when
//! the container is deleted.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Mount, Spec};

/// Where the reaper is, inside the container.
pub const INIT_PATH: &str = "/run/berth-init";
/// Where catatonit is looked for on the host: podman's path, then Debian's.
pub const CATATONIT: &[&str] = &["/usr/libexec/podman/catatonit", "/usr/bin/catatonit"];
/// The copy's name in the bundle directory.
const COPY: &str = "init";

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("option init: no catatonit at {} (install catatonit)", CATATONIT.join(" or "))]
    Missing,
    #[error("option init: copying {} into {}: {source}", from.display(), to.display())]
    Copy {
        from: PathBuf,
        to: PathBuf,
        source: std::io::Error,
    },
}

/// The host's catatonit, if installed.
fn catatonit() -> Result<&'static Path, InitError> {
    CATATONIT
        .iter()
        .map(Path::new)
        .find(|p| p.is_file())
        .ok_or(InitError::Missing)
}

/// Makes `spec` run its command under the reaper, whose copy is to be at
/// `dir`/init ([`copy_into`]). Refused before anything is written when
/// there is no catatonit to copy.
pub fn edit(spec: &mut Spec, dir: &Path) -> Result<(), InitError> {
    catatonit()?;
    if let Some(process) = spec.process_mut() {
        let args = process.args().clone().unwrap_or_default();
        let mut with = vec![INIT_PATH.to_string(), "--".to_string()];
        with.extend(args);
        process.set_args(Some(with));
    }
    let mut m = Mount::default();
    m.set_destination(INIT_PATH.into())
        .set_typ(Some("bind".into()))
        .set_source(Some(dir.join(COPY)))
        .set_options(Some(
            ["bind", "ro", "nosuid", "nodev"].map(String::from).to_vec(),
        ));
    let mut mounts = spec.mounts().clone().unwrap_or_default();
    mounts.retain(|x| x.destination() != Path::new(INIT_PATH));
    mounts.push(m);
    spec.set_mounts(Some(mounts));
    Ok(())
}

/// Copies catatonit to `dir`/init (mode 0555, its own inode).
pub fn copy_into(dir: &Path) -> Result<(), InitError> {
    use std::os::unix::fs::PermissionsExt;
    let from = catatonit()?;
    let to = dir.join(COPY);
    let err = |source| InitError::Copy {
        from: from.into(),
        to: to.clone(),
        source,
    };
    // A leftover of a crashed create: replaced, never written through.
    let _ = std::fs::remove_file(&to);
    std::fs::copy(from, &to).map_err(err)?;
    std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o555)).map_err(err)
}
