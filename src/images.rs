//! berthd's side of images (the berth-image crate): containers created from
//! an image get an overlay rootfs and a spec generated from the image config,
//! written where rewritten bundles go (`<state>/bundles/<id>/`).
//!
//! The store is synchronous and takes its own lock: every call here runs on
//! tokio's blocking pool.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use berth_image::{ErrorKind, ImageStore, SpecOptions};

use crate::error::Error;
use crate::options::CreateOptions;

/// berth-image's error, as the core's (its kind kept).
pub fn image_error(e: berth_image::Error) -> Error {
    let msg = e.to_string();
    match e.kind() {
        ErrorKind::NotFound => Error::NotFound(msg),
        ErrorKind::AlreadyExists => Error::AlreadyExists(msg),
        ErrorKind::InvalidArgument => Error::InvalidArgument(msg),
        ErrorKind::Unavailable => Error::FailedPrecondition(msg),
        ErrorKind::PermissionDenied => Error::PermissionDenied(msg),
        ErrorKind::Internal => Error::Internal(msg),
    }
}

/// The longest image name looked up: a name is an LMDB key (≤ 511 bytes,
/// with room for the registry and tag a short name is completed with).
pub const MAX_NAME: usize = 400;

/// An image name to look up: empty or longer than any stored name names no
/// image (LMDB would refuse the key: an Internal error otherwise).
pub fn check_name(name: &str) -> Result<(), Error> {
    if name.is_empty() || name.len() > MAX_NAME {
        return Err(Error::NotFound(format!(
            "no image {:?}",
            crate::daemon::brief(name)
        )));
    }
    Ok(())
}

/// Runs `f` on the blocking pool with the store, or says there is none.
/// (The result's error is any the core's converts into: the D-Bus edge
/// gets its own without a conversion at every call.)
pub async fn with_store<T: Send + 'static, E: From<Error>>(
    store: &Option<Arc<ImageStore>>,
    f: impl FnOnce(&ImageStore) -> Result<T, Error> + Send + 'static,
) -> Result<T, E> {
    let store = store.clone().ok_or_else(|| {
        Error::FailedPrecondition(
            "the image store could not be opened (see journalctl -u berthd)".into(),
        )
    })?;
    let done = tokio::task::spawn_blocking(move || f(&store))
        .await
        .map_err(|e| Error::Internal(e.to_string()))?;
    Ok(done?)
}

/// Makes the container's rootfs from `image` (unpacked layers + a writable
/// upper, mounted) and writes its config.json into `bundle_dir`; returns
/// `bundle_dir`. Undoes the rootfs if a later step fails.
pub fn prepare(
    store: &ImageStore,
    id: &str,
    image: &str,
    req: &CreateOptions,
    bundle_dir: &Path,
) -> Result<PathBuf, Error> {
    store.create_rootfs(id, image).map_err(image_error)?;
    let made = (|| {
        let mount = store.mount_rootfs(id).map_err(image_error)?;
        if let Some(s) = &req.storage_spec {
            crate::volumes::copy_up(&mount, s)?;
        }
        let opts = SpecOptions {
            args: req.args.clone(),
            env: req.env.clone(),
            workdir: req.workdir.clone(),
            user: req.user.clone(),
            terminal: req.terminal.unwrap_or(false),
            entrypoint: req.security.entrypoint.clone(),
            ..Default::default()
        };
        let generated = store
            .generate_spec(image, &mount, &opts)
            .map_err(image_error)?;
        let spec = match &req.cri.spec {
            None => generated,
            Some(given) => with_image_root(given, &generated, req.user.is_some()),
        };
        // The command is in the spec already, after the entrypoint: the
        // edit must not set process.args over it (an image's Entrypoint
        // would be lost with `run IMAGE ARGS`).
        let mut rest = CreateOptions {
            args: None,
            ..req.clone()
        };
        // group_add's names, in the image's /etc/group (read within the
        // rootfs: its symlinks never reach the host's).
        for name in &req.security.group_names {
            let gid = berth_image::spec::resolve_user(&mount, &format!("0:{name}"))
                .map_err(|e| Error::InvalidArgument(format!("option group_add: {e}")))?
                .gid;
            rest.security.group_add.push(gid);
        }
        Ok(crate::bundle::write_spec(&rest, spec, &mount, bundle_dir)?)
    })();
    if made.is_err() {
        let _ = store.remove_rootfs(id);
    }
    made
}

/// A caller's whole spec (option `spec`) run from the image: only its root
/// is berthd's (the image's mounted rootfs, its readonly flag kept), and,
/// when the caller named a `user`, the uid/gid/groups resolved in the
/// image's /etc/passwd and /etc/group, as for any image container.
fn with_image_root(
    given: &oci_spec::runtime::Spec,
    generated: &oci_spec::runtime::Spec,
    resolve_user: bool,
) -> oci_spec::runtime::Spec {
    let mut spec = given.clone();
    let readonly = given.root().as_ref().and_then(|r| r.readonly());
    let mut root = generated.root().clone().unwrap_or_default();
    root.set_readonly(readonly);
    spec.set_root(Some(root));
    if resolve_user {
        if let (Some(p), Some(g)) = (spec.process_mut(), generated.process()) {
            // The image's groups for the user, then the caller's own
            // (the CRI's supplemental_groups), each once.
            let mut user = g.user().clone();
            let mut gids = user.additional_gids().clone().unwrap_or_default();
            for gid in p.user().additional_gids().iter().flatten() {
                if !gids.contains(gid) {
                    gids.push(*gid);
                }
            }
            user.set_additional_gids(Some(gids).filter(|g| !g.is_empty()));
            p.set_user(user);
        }
    }
    spec
}

/// Removes a container's rootfs, if it was made from an image.
pub fn release(store: &Option<Arc<ImageStore>>, id: &str) {
    if let Some(s) = store {
        if let Err(e) = s.remove_rootfs(id) {
            tracing::warn!(container = %id, "removing the image rootfs: {e}");
        }
    }
}
