//! [`ImageStore`]: the content store, the metadata, the snapshots and the
//! container rootfs dirs under one root (`/var/lib/berth/images` for berthd),
//! and the operations that keep them consistent.
//!
//! Every mutation (import, tag, remove, rootfs create/remove, gc) holds an
//! exclusive flock on `<root>/lock`, in this process and across processes,
//! so gc never deletes a blob an import has written but not yet recorded,
//! and a failed import can delete exactly the blobs and snapshots it added.
//! Reads (list, inspect, resolve) take no lock: LMDB gives them a snapshot.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};

use crate::content::ContentStore;
use crate::digest::Digest;
use crate::export;
use crate::import::{self, ImportOptions, Imported, MAX_JSON};
use crate::meta::{blob_key, snap_key, ImageRecord, MetaDb, RootfsRecord, SnapshotRecord};
use crate::oci::ImageConfig;
use crate::reference::Reference;
use crate::rootfs::{self, Rootfs};
use crate::snapshot::Snapshots;
use crate::spec::{self, SpecOptions};
use crate::Error;

/// The default root for berthd.
pub const DEFAULT_ROOT: &str = "/var/lib/berth/images";
/// LMDB map size: address space reserved, not disk used.
const MAP_SIZE: usize = 256 << 20;

pub struct ImageStore {
    root: PathBuf,
    content: ContentStore,
    meta: MetaDb,
    snapshots: Snapshots,
    containers: PathBuf,
}

/// An image as `inspect` shows it: its record and its config.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageInfo {
    pub record: ImageRecord,
    pub config: ImageConfig,
    /// The config blob, verbatim (what `docker inspect` shows most of).
    pub config_json: serde_json::Value,
    /// Every name the same manifest has in the store.
    pub names: Vec<String>,
}

/// What a gc run removed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GcReport {
    pub blobs: Vec<Digest>,
    pub bytes: u64,
    pub snapshots: Vec<Digest>,
    /// Temp files and dirs of interrupted imports, and unrecorded snapshot dirs.
    pub leftovers: usize,
}

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> Error + 'a {
    move |source| Error::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

impl ImageStore {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<ImageStore, Error> {
        // 0711: container processes in a user namespace must traverse to their
        // rootfs; nothing here is listable by others. snapshots/ is 0700.
        DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(io_err("cannot create", root))?;
        fs::set_permissions(root, fs::Permissions::from_mode(0o711))
            .map_err(io_err("cannot chmod", root))?;
        let containers = root.join("containers");
        DirBuilder::new()
            .mode(0o711)
            .recursive(true)
            .create(&containers)
            .map_err(io_err("cannot create", &containers))?;
        Ok(ImageStore {
            content: ContentStore::open(root)?,
            meta: MetaDb::open(&root.join("db"), MAP_SIZE)?,
            snapshots: Snapshots::open(root)?,
            root: root.to_owned(),
            containers,
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn content(&self) -> &ContentStore {
        &self.content
    }

    pub fn meta(&self) -> &MetaDb {
        &self.meta
    }

    pub(crate) fn lock(&self) -> Result<Flock<File>, Error> {
        let p = self.root.join("lock");
        let f = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&p)
            .map_err(io_err("cannot open", &p))?;
        Flock::lock(f, FlockArg::LockExclusive).map_err(|(_, e)| Error::Io {
            what: "cannot lock",
            path: p.clone(),
            source: e.into(),
        })
    }

    /// Imports an OCI layout directory, or a docker-archive / OCI-archive tar
    /// (optionally gzipped). All or nothing: on error, no record, blob or
    /// snapshot of this import is left.
    pub fn import(&self, path: &Path, opts: &ImportOptions) -> Result<Vec<ImageRecord>, Error> {
        let _lock = self.lock()?;
        let (imported, r) = if import::is_dir(path)? {
            import::oci_dir(&self.content, path, opts)
        } else {
            let mut reader = import::open_archive(path)?;
            import::archive(&self.content, &mut reader, path, opts)
        };
        self.finish_import(imported, r.map_err(Error::from), opts)
    }

    /// Imports a tar stream (docker-archive or OCI layout, not compressed).
    pub fn import_archive(
        &self,
        reader: &mut dyn Read,
        opts: &ImportOptions,
    ) -> Result<Vec<ImageRecord>, Error> {
        let _lock = self.lock()?;
        let (imported, r) = import::archive(&self.content, reader, Path::new("-"), opts);
        self.finish_import(imported, r.map_err(Error::from), opts)
    }

    /// Unpacks and records what an import read, or undoes it.
    pub(crate) fn finish_import(
        &self,
        imported: Imported,
        read: Result<(), Error>,
        opts: &ImportOptions,
    ) -> Result<Vec<ImageRecord>, Error> {
        let mut created: Vec<SnapshotRecord> = Vec::new();
        let r = read.and_then(|()| {
            if opts.unpack {
                for rec in &imported.records {
                    self.snapshots
                        .ensure(&self.content, &self.meta, rec, &mut created)?;
                }
            }
            self.meta.put_images(&imported.records)?;
            Ok(())
        });
        match r {
            Ok(()) => Ok(imported.records),
            Err(e) => {
                for s in &created {
                    if self
                        .meta
                        .delete_snapshot_if_unused(&s.chain_id)
                        .unwrap_or(false)
                    {
                        let _ = self.snapshots.remove_dir(s.id);
                    }
                }
                for d in &imported.new_blobs {
                    if self.meta.refcount(&blob_key(d)).unwrap_or(1) == 0 {
                        let _ = self.content.delete(d);
                    }
                }
                Err(e)
            }
        }
    }

    /// Every image, sorted by name.
    pub fn list(&self) -> Result<Vec<ImageRecord>, Error> {
        Ok(self.meta.images()?)
    }

    /// Finds an image by name (normalized: `busybox` is
    /// `docker.io/library/busybox:latest`), by manifest digest, or by a unique
    /// prefix (≥ 4 hex digits) of its id (config digest) or manifest digest.
    pub fn resolve(&self, name: &str) -> Result<ImageRecord, Error> {
        if let Some(r) = self.meta.image(name)? {
            return Ok(r);
        }
        if let Ok(reference) = Reference::parse(name) {
            if let Some(r) = self.meta.image(&reference.to_string())? {
                return Ok(r);
            }
        }
        let hex = name.strip_prefix("sha256:").unwrap_or(name);
        if hex.len() >= 4 && hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            let hex = hex.to_ascii_lowercase();
            let all = self.meta.images()?;
            let mut hits: Vec<&ImageRecord> = all
                .iter()
                .filter(|r| r.config.hex().starts_with(&hex) || r.manifest.hex().starts_with(&hex))
                .collect();
            hits.dedup_by(|a, b| a.manifest == b.manifest);
            match hits.as_slice() {
                [one] => return Ok((*one).clone()),
                [] => {}
                _ => return Err(Error::Ambiguous(name.to_owned())),
            }
        }
        Err(Error::NoImage(name.to_owned()))
    }

    /// The record, the parsed config and every name of the image.
    pub fn inspect(&self, name: &str) -> Result<ImageInfo, Error> {
        let record = self.resolve(name)?;
        let data = self.content.read_small(&record.config, MAX_JSON)?;
        let config: ImageConfig = serde_json::from_slice(&data).map_err(|e| Error::BadBlob {
            digest: record.config.clone(),
            error: e.to_string(),
        })?;
        let config_json = serde_json::from_slice(&data).unwrap_or_default();
        let names = self
            .meta
            .images()?
            .into_iter()
            .filter(|r| r.manifest == record.manifest)
            .map(|r| r.name)
            .collect();
        Ok(ImageInfo {
            record,
            config,
            config_json,
            names,
        })
    }

    /// Gives the image `src` the name `new` as well (replacing an image of that name).
    pub fn tag(&self, src: &str, new: &str) -> Result<ImageRecord, Error> {
        let _lock = self.lock()?;
        let mut rec = self.resolve(src)?;
        rec.name = Reference::parse(new)?.to_string();
        self.meta.put_images(std::slice::from_ref(&rec))?;
        Ok(rec)
    }

    /// Removes a name. The blobs and snapshots stay until [`ImageStore::gc`].
    pub fn remove(&self, name: &str) -> Result<ImageRecord, Error> {
        let _lock = self.lock()?;
        let rec = self.resolve(name)?;
        Ok(self.meta.remove_image(&rec.name)?)
    }

    /// Saves images as an OCI layout directory.
    pub fn save(&self, names: &[&str], dest: &Path) -> Result<(), Error> {
        let recs = names
            .iter()
            .map(|n| self.resolve(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(export::to_dir(&self.content, &recs, dest)?)
    }

    /// Saves images as an OCI layout tar stream.
    pub fn save_tar(&self, names: &[&str], w: &mut dyn Write) -> Result<(), Error> {
        let recs = names
            .iter()
            .map(|n| self.resolve(n))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(export::to_tar(&self.content, &recs, w)?)
    }

    /// Unpacks every layer of the image that is not yet; returns the lower
    /// dirs, bottom first.
    pub fn unpack(&self, name: &str) -> Result<Vec<PathBuf>, Error> {
        let _lock = self.lock()?;
        let rec = self.resolve(name)?;
        Ok(self
            .snapshots
            .ensure(&self.content, &self.meta, &rec, &mut Vec::new())?)
    }

    fn rootfs_of(&self, rec: &RootfsRecord) -> Result<Rootfs, Error> {
        let mut lowers = Vec::new();
        for c in &rec.chain_ids {
            let s = self
                .meta
                .snapshot(c)?
                .ok_or_else(|| Error::MissingSnapshot(c.clone()))?;
            lowers.push(self.snapshots.fs(s.id));
        }
        Ok(Rootfs {
            container: rec.container.clone(),
            dir: rec.dir.clone(),
            lowers,
        })
    }

    /// Prepares a container's rootfs from an image: unpacks what is missing,
    /// records the container's hold on the snapshots (gc keeps them while the
    /// record exists, even if the image is removed) and creates its dirs.
    /// Does not mount: see [`ImageStore::mount_rootfs`].
    pub fn create_rootfs(&self, container: &str, image: &str) -> Result<Rootfs, Error> {
        rootfs::check_id(container)?;
        let _lock = self.lock()?;
        let img = self.resolve(image)?;
        if self.meta.rootfs(container)?.is_some() {
            return Err(Error::RootfsExists(container.to_owned()));
        }
        self.snapshots
            .ensure(&self.content, &self.meta, &img, &mut Vec::new())?;
        let rec = RootfsRecord {
            container: container.to_owned(),
            image: img.name.clone(),
            manifest: img.manifest.clone(),
            chain_ids: img.chain_ids(),
            dir: self.containers.join(container),
            created_at: import::now_micros(),
        };
        let rootfs = self.rootfs_of(&rec)?;
        // A stale dir of a container whose record was lost is replaced.
        rootfs.remove()?;
        rootfs.create_dirs()?;
        if let Err(e) = self.meta.put_rootfs(&rec) {
            let _ = rootfs.remove();
            return Err(e.into());
        }
        Ok(rootfs)
    }

    /// A container's rootfs, if it has one.
    pub fn rootfs(&self, container: &str) -> Result<Option<Rootfs>, Error> {
        match self.meta.rootfs(container)? {
            Some(rec) => Ok(Some(self.rootfs_of(&rec)?)),
            None => Ok(None),
        }
    }

    /// Mounts a container's overlay (idempotent); returns the mount point.
    pub fn mount_rootfs(&self, container: &str) -> Result<PathBuf, Error> {
        let r = self
            .rootfs(container)?
            .ok_or_else(|| Error::NoRootfs(container.to_owned()))?;
        Ok(r.mount()?)
    }

    pub fn unmount_rootfs(&self, container: &str) -> Result<(), Error> {
        let r = self
            .rootfs(container)?
            .ok_or_else(|| Error::NoRootfs(container.to_owned()))?;
        Ok(r.unmount()?)
    }

    /// Unmounts and deletes a container's rootfs and its hold on the snapshots.
    /// False if the container had none.
    pub fn remove_rootfs(&self, container: &str) -> Result<bool, Error> {
        rootfs::check_id(container)?;
        let _lock = self.lock()?;
        let Some(r) = self.rootfs(container)? else {
            return Ok(false);
        };
        r.remove()?;
        self.meta.remove_rootfs(container)?;
        Ok(true)
    }

    /// An OCI runtime spec for a container of `image` whose root is `rootfs`
    /// (mounted: the image's /etc/passwd and /etc/group are read from it).
    pub fn generate_spec(
        &self,
        image: &str,
        rootfs: &Path,
        opts: &SpecOptions,
    ) -> Result<oci_spec::runtime::Spec, Error> {
        let info = self.inspect(image)?;
        Ok(spec::generate(&info.config, rootfs, opts)?)
    }

    /// Removes every blob and snapshot nothing references, and what
    /// interrupted imports left behind.
    pub fn gc(&self) -> Result<GcReport, Error> {
        let _lock = self.lock()?;
        let mut report = GcReport::default();
        let refs = self.meta.refcounts()?;
        for d in self.content.list()? {
            if !refs.contains_key(&blob_key(&d)) {
                let size = fs::metadata(self.content.path(&d)).map_or(0, |m| m.len());
                if self.content.delete(&d)? {
                    report.bytes += size;
                    report.blobs.push(d);
                }
            }
        }
        let mut recorded = std::collections::BTreeSet::new();
        for s in self.meta.snapshots()? {
            if !refs.contains_key(&snap_key(&s.chain_id))
                && self.meta.delete_snapshot_if_unused(&s.chain_id)?
            {
                self.snapshots.remove_dir(s.id)?;
                report.snapshots.push(s.chain_id);
            } else {
                recorded.insert(s.id);
            }
        }
        for id in self.snapshots.ids_on_disk()? {
            if !recorded.contains(&id) {
                self.snapshots.remove_dir(id)?;
                report.leftovers += 1;
            }
        }
        for dir in [self.content.ingest_dir(), self.snapshots.tmp_dir()] {
            for e in fs::read_dir(dir).map_err(io_err("cannot list", dir))? {
                let p = e.map_err(io_err("cannot list", dir))?.path();
                let r = if p.is_dir() {
                    fs::remove_dir_all(&p)
                } else {
                    fs::remove_file(&p)
                };
                r.map_err(io_err("cannot remove", &p))?;
                report.leftovers += 1;
            }
        }
        Ok(report)
    }
}
