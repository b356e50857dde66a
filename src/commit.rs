//! CommitContainer (`berthctl commit`): a container's upper layer as a new
//! image in the store. The layer is the overlay upper directory as an OCI
//! layer tar (whiteouts converted: copy.rs's walk, fd-relative and never
//! following the container's links); the config is the base image's with
//! the layer's diff id appended; the manifest the base's layers plus the new
//! one. These three go into the content store, and an OCI layout naming them
//! is imported by berth-image's own importer — the one path every image
//! takes into the store (checks, records, snapshots, undo on failure).

use std::io::Write;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use berth_image::{oci, Digest, ImageRecord, ImageStore, ImportOptions};
use serde_json::json;

use crate::error::Error;

/// Whether the upper directory `dir` hides what is below it (overlayfs's
/// opaque mark: trusted.overlay.opaque, or user.* with userxattr).
pub fn is_opaque(dir: &OwnedFd) -> bool {
    ["trusted.overlay.opaque", "user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut buf = [0u8; 4];
            matches!(rustix::fs::fgetxattr(dir, *name, &mut buf), Ok(n) if buf[..n] == *b"y")
        })
}

/// An empty `.wh.` entry: the OCI spelling of a deletion.
pub fn append_whiteout<W: Write>(tar: &mut tar::Builder<W>, path: &Path) -> std::io::Result<()> {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_size(0);
    h.set_mode(0o644);
    h.set_uid(0);
    h.set_gid(0);
    h.set_mtime(0);
    tar.append_data(&mut h, path, std::io::empty())
}

fn internal(what: &str) -> impl Fn(std::io::Error) -> Error + '_ {
    move |e| Error::Internal(format!("commit: {what}: {e}"))
}

/// Commits container `id` (made from `image`) as `new_name`.
pub fn commit(
    store: &ImageStore,
    id: &str,
    image: &str,
    new_name: &str,
) -> Result<ImageRecord, Error> {
    let image_err = crate::images::image_error;
    let rootfs = store
        .rootfs(id)
        .map_err(image_err)?
        .ok_or_else(|| Error::FailedPrecondition(format!("container {id} has no image rootfs")))?;
    let base = store.resolve(image).map_err(image_err)?;
    let cs = store.content();
    let work = cs
        .ingest_dir()
        .join(format!("commit-{id}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(work.join("blobs/sha256")).map_err(internal("its work dir"))?;
    let done = (|| {
        // The layer: the upper dir as a tar, then into the content store.
        let layer_path = work.join("layer.tar");
        let root =
            crate::copy::open_root(&rootfs.upper()).map_err(|e| Error::Internal(e.to_string()))?;
        let src = crate::copy::open_source(&root, id, "/").map_err(Error::from)?;
        let file = std::fs::File::create(&layer_path).map_err(internal("the layer"))?;
        crate::copy::write_layer(src, std::io::BufWriter::new(file))
            .map_err(internal("the layer"))?;
        let mut f = std::fs::File::open(&layer_path).map_err(internal("the layer"))?;
        let (layer, layer_size, _) = cs.ingest(&mut f, None).map_err(|e| image_err(e.into()))?;
        // The config: the base's, one diff id more.
        let raw = cs
            .read_small(&base.config, 4 << 20)
            .map_err(|e| image_err(e.into()))?;
        let mut config: serde_json::Value = serde_json::from_slice(&raw)
            .map_err(|e| Error::Internal(format!("commit: config: {e}")))?;
        match config["rootfs"]["diff_ids"].as_array_mut() {
            Some(ids) => ids.push(json!(layer.to_string())),
            None => config["rootfs"] = json!({"type": "layers", "diff_ids": [layer.to_string()]}),
        }
        let history = json!({"created_by": format!("berthctl commit {id}")});
        match config["history"].as_array_mut() {
            Some(h) => h.push(history),
            None => config["history"] = json!([history]),
        }
        let config = serde_json::to_vec(&config).map_err(|e| Error::Internal(e.to_string()))?;
        let manifest = json!({
            "schemaVersion": 2,
            "mediaType": oci::OCI_MANIFEST,
            "config": {"mediaType": oci::OCI_CONFIG, "digest": Digest::of(&config).to_string(), "size": config.len()},
            "layers": base.layers.iter().map(|l| json!({
                "mediaType": l.media_type, "digest": l.digest.to_string(), "size": l.size,
            })).chain([json!({
                "mediaType": oci::OCI_LAYER, "digest": layer.to_string(), "size": layer_size,
            })]).collect::<Vec<_>>(),
        });
        let manifest = serde_json::to_vec(&manifest).map_err(|e| Error::Internal(e.to_string()))?;
        // An OCI layout of the two small blobs (the layers are in the store).
        let write = |rel: PathBuf, data: &[u8]| {
            std::fs::write(work.join(rel), data).map_err(internal("the layout"))
        };
        write(
            PathBuf::from("blobs/sha256").join(Digest::of(&config).hex()),
            &config,
        )?;
        write(
            PathBuf::from("blobs/sha256").join(Digest::of(&manifest).hex()),
            &manifest,
        )?;
        write("oci-layout".into(), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        let index = json!({
            "schemaVersion": 2,
            "manifests": [{"mediaType": oci::OCI_MANIFEST, "digest": Digest::of(&manifest).to_string(), "size": manifest.len()}],
        });
        write("index.json".into(), index.to_string().as_bytes())?;
        std::fs::remove_file(&layer_path).map_err(internal("the layer"))?;
        let opts = ImportOptions {
            name: Some(new_name.to_string()),
            ..Default::default()
        };
        let mut records = store.import(&work, &opts).map_err(image_err)?;
        records
            .pop()
            .ok_or_else(|| Error::Internal("commit: the import recorded no image".into()))
    })();
    let _ = std::fs::remove_dir_all(&work);
    done
}
