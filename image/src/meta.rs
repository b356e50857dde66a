//! Image metadata in LMDB (heed), in its own environment at `<root>/db`:
//! image records by name, snapshot records by chain id, container rootfs
//! leases, and reference counts of blobs and snapshots.
//!
//! Reference counts change in the same write transaction as the records that
//! hold the references, so they are always the sum of what the records name:
//! `blob:<digest>` counts the image records naming the blob (manifest, config,
//! layers); `snap:<chain id>` counts image records and rootfs leases naming
//! the snapshot. Nothing is deleted here: gc deletes what has no reference.

use std::collections::BTreeMap;
use std::fs::{self, DirBuilder, Permissions};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

use heed::types::{SerdeJson, Str};
use heed::{CommitOrAbort, Database, Env, EnvOpenOptions, MdbError, RwTxn, WithoutTls};
use serde::{Deserialize, Serialize};

use crate::digest::{chain_ids, Digest};
use crate::oci::Platform;

const MAX_DBS: u32 = 5;

#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    #[error("cannot create the image metadata directory {}: {source}", .path.display())]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot open the image metadata store at {}: {source}", .path.display())]
    Open { path: PathBuf, source: heed::Error },
    #[error("image metadata store: {0}")]
    Db(#[from] heed::Error),
    #[error("the image metadata store is full (LMDB map size {map_size} bytes)")]
    MapFull { map_size: usize },
    #[error("no image {0:?}")]
    NoImage(String),
    #[error("container {0:?} already has a rootfs")]
    RootfsExists(String),
}

/// One layer of an image: the blob as stored and the tar it decompresses to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerRecord {
    pub digest: Digest,
    pub size: u64,
    pub media_type: String,
    pub diff_id: Digest,
}

/// A named image: what `ListImages` shows and what a rootfs is made from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImageRecord {
    /// Normalized reference (`docker.io/library/busybox:latest`), or the
    /// manifest digest for an image imported without a name.
    pub name: String,
    pub manifest: Digest,
    pub manifest_size: u64,
    pub manifest_media_type: String,
    /// The index the manifest was chosen from, if any (not stored).
    #[serde(default)]
    pub index: Option<Digest>,
    pub platform: Platform,
    /// The image id, as docker shows it.
    pub config: Digest,
    pub config_size: u64,
    pub config_media_type: String,
    pub layers: Vec<LayerRecord>,
    /// Microseconds since the epoch.
    pub imported_at: u64,
}

impl ImageRecord {
    /// Every blob the record refers to.
    pub fn blobs(&self) -> Vec<Digest> {
        let mut v = vec![self.manifest.clone(), self.config.clone()];
        v.extend(self.layers.iter().map(|l| l.digest.clone()));
        v
    }

    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// Chain ids of the layer stack, bottom first.
    pub fn chain_ids(&self) -> Vec<Digest> {
        chain_ids(&self.diff_ids())
    }

    /// Compressed size of the layers.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }
}

/// An unpacked layer: `<root>/snapshots/<id>/fs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SnapshotRecord {
    pub id: u64,
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Bytes of the unpacked tar.
    pub size: u64,
    pub created_at: u64,
}

/// A container's rootfs: its snapshots (bottom first) and its own dir.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RootfsRecord {
    pub container: String,
    pub image: String,
    pub manifest: Digest,
    pub chain_ids: Vec<Digest>,
    pub dir: PathBuf,
    pub created_at: u64,
}

pub(crate) fn blob_key(d: &Digest) -> String {
    format!("blob:{d}")
}

pub(crate) fn snap_key(d: &Digest) -> String {
    format!("snap:{d}")
}

pub struct MetaDb {
    env: Env<WithoutTls>,
    images: Database<'static, Str, SerdeJson<ImageRecord>>,
    snapshots: Database<'static, Str, SerdeJson<SnapshotRecord>>,
    rootfs: Database<'static, Str, SerdeJson<RootfsRecord>>,
    refs: Database<'static, Str, SerdeJson<u64>>,
    counters: Database<'static, Str, SerdeJson<u64>>,
}

impl MetaDb {
    pub fn open(dir: &Path, map_size: usize) -> Result<MetaDb, MetaError> {
        let create_dir = |source| MetaError::CreateDir {
            path: dir.to_owned(),
            source,
        };
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(create_dir)?;
        fs::set_permissions(dir, Permissions::from_mode(0o700)).map_err(create_dir)?;
        let open_err = |source| MetaError::Open {
            path: dir.to_owned(),
            source,
        };
        let mut options = EnvOpenOptions::new().read_txn_without_tls();
        options.map_size(map_size).max_dbs(MAX_DBS);
        // SAFETY: as in berthd's store: one open per env path per process (the
        // image store is opened once), no unsafe flags, nothing else writes the files.
        let env = unsafe { options.open(dir) }.map_err(open_err)?;
        let wtxn = env.write_txn().map_err(open_err)?;
        let created = env
            .create_databases_and_commit(wtxn, |opener, wtxn| {
                let dbs = (
                    opener.create_database(wtxn, Some("images"))?,
                    opener.create_database(wtxn, Some("snapshots"))?,
                    opener.create_database(wtxn, Some("rootfs"))?,
                    opener.create_database(wtxn, Some("refs"))?,
                    opener.create_database(wtxn, Some("counters"))?,
                );
                Ok::<_, heed::Error>(CommitOrAbort::<_, std::convert::Infallible>::Commit(dbs))
            })
            .map_err(open_err)?;
        let (images, snapshots, rootfs, refs, counters) = match created {
            CommitOrAbort::Commit(dbs) => dbs,
            CommitOrAbort::Abort(never) => match never {},
        };
        Ok(MetaDb {
            env,
            images,
            snapshots,
            rootfs,
            refs,
            counters,
        })
    }

    fn write<T>(&self, f: impl FnOnce(&mut RwTxn) -> Result<T, MetaError>) -> Result<T, MetaError> {
        let run = || {
            let mut wtxn = self.env.write_txn()?;
            let out = f(&mut wtxn)?;
            wtxn.commit()?;
            Ok(out)
        };
        run().map_err(|e| match e {
            MetaError::Db(heed::Error::Mdb(MdbError::MapFull)) => MetaError::MapFull {
                map_size: self.env.info().map_size,
            },
            e => e,
        })
    }

    fn add_refs(&self, wtxn: &mut RwTxn, keys: &[String], delta: i64) -> Result<(), MetaError> {
        for k in keys {
            let n = self.refs.get(wtxn, k)?.unwrap_or(0);
            let n = n.saturating_add_signed(delta);
            if n == 0 {
                self.refs.delete(wtxn, k)?;
            } else {
                self.refs.put(wtxn, k, &n)?;
            }
        }
        Ok(())
    }

    fn image_keys(rec: &ImageRecord) -> Vec<String> {
        let mut keys: Vec<String> = rec.blobs().iter().map(blob_key).collect();
        keys.extend(rec.chain_ids().iter().map(snap_key));
        keys
    }

    /// Stores records (replacing images of the same names) in one transaction.
    /// Returns the records replaced.
    pub fn put_images(&self, recs: &[ImageRecord]) -> Result<Vec<ImageRecord>, MetaError> {
        self.write(|wtxn| {
            let mut replaced = Vec::new();
            for rec in recs {
                if let Some(old) = self.images.get(wtxn, &rec.name)? {
                    self.add_refs(wtxn, &Self::image_keys(&old), -1)?;
                    replaced.push(old);
                }
                self.images.put(wtxn, &rec.name, rec)?;
                self.add_refs(wtxn, &Self::image_keys(rec), 1)?;
            }
            Ok(replaced)
        })
    }

    /// Removes an image record, dropping its references.
    pub fn remove_image(&self, name: &str) -> Result<ImageRecord, MetaError> {
        self.write(|wtxn| {
            let old = self
                .images
                .get(wtxn, name)?
                .ok_or_else(|| MetaError::NoImage(name.to_owned()))?;
            self.images.delete(wtxn, name)?;
            self.add_refs(wtxn, &Self::image_keys(&old), -1)?;
            Ok(old)
        })
    }

    pub fn image(&self, name: &str) -> Result<Option<ImageRecord>, MetaError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.images.get(&rtxn, name)?)
    }

    pub fn images(&self) -> Result<Vec<ImageRecord>, MetaError> {
        let rtxn = self.env.read_txn()?;
        let it = self.images.iter(&rtxn)?.map(|r| r.map(|(_, v)| v));
        Ok(it.collect::<heed::Result<_>>()?)
    }

    pub fn refcount(&self, key: &str) -> Result<u64, MetaError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.refs.get(&rtxn, key)?.unwrap_or(0))
    }

    /// Every nonzero reference count.
    pub fn refcounts(&self) -> Result<BTreeMap<String, u64>, MetaError> {
        let rtxn = self.env.read_txn()?;
        let it = self
            .refs
            .iter(&rtxn)?
            .map(|r| r.map(|(k, v)| (k.to_owned(), v)));
        Ok(it.collect::<heed::Result<_>>()?)
    }

    /// A fresh snapshot id (ids are never reused).
    pub fn next_snapshot_id(&self) -> Result<u64, MetaError> {
        self.write(|wtxn| {
            let n = self.counters.get(wtxn, "snapshot")?.unwrap_or(0) + 1;
            self.counters.put(wtxn, "snapshot", &n)?;
            Ok(n)
        })
    }

    pub fn snapshot(&self, chain_id: &Digest) -> Result<Option<SnapshotRecord>, MetaError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.snapshots.get(&rtxn, &chain_id.to_string())?)
    }

    pub fn put_snapshot(&self, rec: &SnapshotRecord) -> Result<(), MetaError> {
        self.write(|wtxn| Ok(self.snapshots.put(wtxn, &rec.chain_id.to_string(), rec)?))
    }

    /// Deletes a snapshot record unless something references it; true if deleted.
    pub fn delete_snapshot_if_unused(&self, chain_id: &Digest) -> Result<bool, MetaError> {
        self.write(|wtxn| {
            if self.refs.get(wtxn, &snap_key(chain_id))?.unwrap_or(0) > 0 {
                return Ok(false);
            }
            Ok(self.snapshots.delete(wtxn, &chain_id.to_string())?)
        })
    }

    pub fn snapshots(&self) -> Result<Vec<SnapshotRecord>, MetaError> {
        let rtxn = self.env.read_txn()?;
        let it = self.snapshots.iter(&rtxn)?.map(|r| r.map(|(_, v)| v));
        Ok(it.collect::<heed::Result<_>>()?)
    }

    /// Records a container's rootfs, referencing its snapshots.
    pub fn put_rootfs(&self, rec: &RootfsRecord) -> Result<(), MetaError> {
        self.write(|wtxn| {
            if self.rootfs.get(wtxn, &rec.container)?.is_some() {
                return Err(MetaError::RootfsExists(rec.container.clone()));
            }
            self.rootfs.put(wtxn, &rec.container, rec)?;
            let keys: Vec<String> = rec.chain_ids.iter().map(snap_key).collect();
            self.add_refs(wtxn, &keys, 1)
        })
    }

    pub fn rootfs(&self, container: &str) -> Result<Option<RootfsRecord>, MetaError> {
        let rtxn = self.env.read_txn()?;
        Ok(self.rootfs.get(&rtxn, container)?)
    }

    pub fn rootfs_list(&self) -> Result<Vec<RootfsRecord>, MetaError> {
        let rtxn = self.env.read_txn()?;
        let it = self.rootfs.iter(&rtxn)?.map(|r| r.map(|(_, v)| v));
        Ok(it.collect::<heed::Result<_>>()?)
    }

    /// Drops a container's rootfs record and its references; the old record, if any.
    pub fn remove_rootfs(&self, container: &str) -> Result<Option<RootfsRecord>, MetaError> {
        self.write(|wtxn| {
            let Some(old) = self.rootfs.get(wtxn, container)? else {
                return Ok(None);
            };
            self.rootfs.delete(wtxn, container)?;
            let keys: Vec<String> = old.chain_ids.iter().map(snap_key).collect();
            self.add_refs(wtxn, &keys, -1)?;
            Ok(Some(old))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(name: &str, layers: &[&[u8]]) -> ImageRecord {
        ImageRecord {
            name: name.into(),
            manifest: Digest::of(name.as_bytes()),
            manifest_size: 1,
            manifest_media_type: crate::oci::OCI_MANIFEST.into(),
            index: None,
            platform: Platform::host(),
            config: Digest::of(b"config"),
            config_size: 1,
            config_media_type: crate::oci::OCI_CONFIG.into(),
            layers: layers
                .iter()
                .map(|l| LayerRecord {
                    digest: Digest::of(l),
                    size: l.len() as u64,
                    media_type: crate::oci::OCI_LAYER.into(),
                    diff_id: Digest::of(l),
                })
                .collect(),
            imported_at: 0,
        }
    }

    #[test]
    fn refcounts_follow_records_and_leases() {
        let dir = std::env::temp_dir().join(format!("berth-image-meta-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let db = MetaDb::open(&dir, 1 << 20).unwrap();
        let a = rec("a", &[b"l1", b"l2"]);
        let b = rec("b", &[b"l1"]);
        assert!(db.put_images(&[a.clone(), b.clone()]).unwrap().is_empty());
        let l1 = blob_key(&Digest::of(b"l1"));
        assert_eq!(db.refcount(&l1).unwrap(), 2);
        assert_eq!(db.refcount(&blob_key(&Digest::of(b"config"))).unwrap(), 2);
        // Replacing "b" with another image moves its references.
        let b2 = rec("b", &[b"l3"]);
        assert_eq!(db.put_images(std::slice::from_ref(&b2)).unwrap(), [b]);
        assert_eq!(db.refcount(&l1).unwrap(), 1);
        // A rootfs lease holds a's snapshots after a is gone.
        let chain = a.chain_ids();
        let lease = RootfsRecord {
            container: "c".into(),
            image: "a".into(),
            manifest: a.manifest.clone(),
            chain_ids: chain.clone(),
            dir: "/x".into(),
            created_at: 0,
        };
        db.put_rootfs(&lease).unwrap();
        assert!(matches!(
            db.put_rootfs(&lease),
            Err(MetaError::RootfsExists(_))
        ));
        db.remove_image("a").unwrap();
        assert!(matches!(db.remove_image("a"), Err(MetaError::NoImage(_))));
        assert_eq!(db.refcount(&l1).unwrap(), 0);
        assert_eq!(db.refcount(&snap_key(&chain[1])).unwrap(), 1);
        assert_eq!(db.remove_rootfs("c").unwrap(), Some(lease));
        assert_eq!(db.remove_rootfs("c").unwrap(), None);
        let left: Vec<String> = db.refcounts().unwrap().into_keys().collect();
        let mut want: Vec<String> = b2.blobs().iter().map(blob_key).collect();
        want.extend(b2.chain_ids().iter().map(snap_key));
        want.sort();
        assert_eq!(left, want);
        assert_eq!(
            (
                db.next_snapshot_id().unwrap(),
                db.next_snapshot_id().unwrap()
            ),
            (1, 2)
        );
        drop(db);
        fs::remove_dir_all(&dir).unwrap();
    }
}
