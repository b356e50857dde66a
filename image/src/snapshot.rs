//! Snapshots: each layer unpacked once, into `<root>/snapshots/<id>/fs`, keyed
//! in the metadata store by the chain id of the stack it tops (so the same
//! layer over different parents is a different snapshot, as in containerd).
//! Ids are short sequence numbers so that overlay's lowerdir option (one page
//! at most) fits many layers.
//!
//! A layer is unpacked into `<root>/snapshots/tmp/<unique>/` (mode 0700), then
//! renamed to `<root>/snapshots/<id>` and recorded: a crash or an error leaves
//! a temp dir or an unrecorded dir, which gc removes, never a half snapshot.

use std::fs::{self, DirBuilder};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use crate::content::{sync_dir, temp_name, ContentError, ContentStore};
use crate::digest::Digest;
use crate::import::now_micros;
use crate::meta::{ImageRecord, MetaDb, MetaError, SnapshotRecord};
use crate::oci::{self, Kind};
use crate::unpack::{unpack_layer, UnpackError};

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("layer {layer}: {source}")]
    Unpack {
        layer: Digest,
        #[source]
        source: UnpackError,
    },
    #[error("layer {layer}: unknown media type {media_type:?}")]
    UnknownMediaType { layer: Digest, media_type: String },
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Meta(#[from] MetaError),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> SnapshotError + 'a {
    move |source| SnapshotError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

pub struct Snapshots {
    dir: PathBuf,
    tmp: PathBuf,
}

impl Snapshots {
    pub fn open(root: &Path) -> Result<Snapshots, SnapshotError> {
        let dir = root.join("snapshots");
        let tmp = dir.join("tmp");
        // 0700: layers hold setuid binaries and device nodes that host users
        // must not reach.
        for d in [&dir, &tmp] {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(d)
                .map_err(io_at("cannot create", d))?;
        }
        Ok(Snapshots { dir, tmp })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tmp_dir(&self) -> &Path {
        &self.tmp
    }

    /// The lower dir of a snapshot.
    pub fn fs(&self, id: u64) -> PathBuf {
        self.dir.join(id.to_string()).join("fs")
    }

    /// Removes a snapshot's directory.
    pub fn remove_dir(&self, id: u64) -> Result<(), SnapshotError> {
        let d = self.dir.join(id.to_string());
        match fs::remove_dir_all(&d) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_at("cannot remove", &d)(e)),
            _ => Ok(()),
        }
    }

    /// Makes sure every layer of `image` is unpacked. Returns the lower dirs,
    /// bottom first. The snapshots this call creates are pushed to `created`
    /// as they are made, also when a later layer fails (for the caller to
    /// undo).
    pub fn ensure(
        &self,
        cs: &ContentStore,
        meta: &MetaDb,
        image: &ImageRecord,
        created: &mut Vec<SnapshotRecord>,
    ) -> Result<Vec<PathBuf>, SnapshotError> {
        let chains = image.chain_ids();
        let mut dirs: Vec<PathBuf> = Vec::new();
        for (i, (layer, chain)) in image.layers.iter().zip(&chains).enumerate() {
            if let Some(rec) = meta.snapshot(chain)? {
                let fs_dir = self.fs(rec.id);
                if fs_dir.is_dir() {
                    dirs.push(fs_dir);
                    continue;
                }
            }
            let compression = match oci::kind_of(&layer.media_type) {
                Some(Kind::Layer(c)) => c,
                _ => {
                    return Err(SnapshotError::UnknownMediaType {
                        layer: layer.digest.clone(),
                        media_type: layer.media_type.clone(),
                    })
                }
            };
            let id = meta.next_snapshot_id()?;
            let tmp = self.tmp.join(temp_name("unpack"));
            let fs_tmp = tmp.join("fs");
            DirBuilder::new()
                .mode(0o700)
                .create(&tmp)
                .map_err(io_at("cannot create", &tmp))?;
            DirBuilder::new()
                .mode(0o755)
                .create(&fs_tmp)
                .map_err(io_at("cannot create", &fs_tmp))?;
            // Exactly 0755, whatever the caller's umask (berthd's is 0077):
            // this is the container's / unless the layer says otherwise.
            std::fs::set_permissions(&fs_tmp, std::fs::Permissions::from_mode(0o755))
                .map_err(io_at("cannot chmod", &fs_tmp))?;
            let lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
            let unpacked =
                cs.open_blob(&layer.digest)
                    .map_err(SnapshotError::from)
                    .and_then(|blob| {
                        unpack_layer(blob, compression, &fs_tmp, &lowers, Some(&layer.diff_id))
                            .map_err(|source| SnapshotError::Unpack {
                                layer: layer.digest.clone(),
                                source,
                            })
                    });
            let unpacked = match unpacked {
                Ok(u) => u,
                Err(e) => {
                    let _ = fs::remove_dir_all(&tmp);
                    return Err(e);
                }
            };
            let dest = self.dir.join(id.to_string());
            if let Err(e) = fs::rename(&tmp, &dest).and_then(|()| sync_dir(&self.dir)) {
                let _ = fs::remove_dir_all(&tmp);
                return Err(io_at("cannot store snapshot", &dest)(e));
            }
            let rec = SnapshotRecord {
                id,
                chain_id: chain.clone(),
                diff_id: layer.diff_id.clone(),
                parent: i.checked_sub(1).map(|p| chains[p].clone()),
                size: unpacked.size,
                created_at: now_micros(),
            };
            if let Err(e) = meta.put_snapshot(&rec) {
                let _ = fs::remove_dir_all(&dest);
                return Err(e.into());
            }
            dirs.push(self.fs(id));
            created.push(rec);
        }
        Ok(dirs)
    }

    /// Snapshot ids that have a directory.
    pub fn ids_on_disk(&self) -> Result<Vec<u64>, SnapshotError> {
        let mut ids = Vec::new();
        for e in fs::read_dir(&self.dir).map_err(io_at("cannot list", &self.dir))? {
            let e = e.map_err(io_at("cannot list", &self.dir))?;
            if let Some(id) = e.file_name().to_str().and_then(|n| n.parse().ok()) {
                ids.push(id);
            }
        }
        Ok(ids)
    }
}
