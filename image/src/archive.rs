//! Tar inputs: `docker save` / `podman save` archives (docker-archive:
//! manifest.json, `<id>.json` configs, layer tars by path) and OCI layouts
//! in a tar (`oci-archive`), plain or gzipped. The tar is read once: every
//! regular file is staged in the ingest dir while its digest is computed,
//! then the files an image references are renamed into the content store
//! and the rest dropped.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::content::{ContentError, ContentStore, Staged};
use crate::digest::Digest;
use crate::import::{
    image_name, io_at, now_micros, parse_json, read_limited, ImportError, ImportOptions, Imported,
    Importer, Layout,
};
use crate::meta::{ImageRecord, LayerRecord};
use crate::oci::{self, Descriptor, ImageConfig, Manifest, Platform};
use crate::unpack::{clean_path, stream_err, EofReader, UnpackError};

/// An archive's regular files, staged in the ingest dir with their digests.
pub(crate) struct StagedArchive {
    files: BTreeMap<PathBuf, Staged>,
    links: BTreeMap<PathBuf, PathBuf>,
}

impl StagedArchive {
    fn read(cs: &ContentStore, reader: &mut dyn Read) -> Result<StagedArchive, ImportError> {
        let mut files = BTreeMap::new();
        let mut links = BTreeMap::new();
        let (reader, eof) = EofReader::new(reader);
        let mut ar = tar::Archive::new(reader);
        let arc = |e: io::Error| -> ImportError { stream_err(e, eof.get()).into() };
        for entry in ar.entries().map_err(arc)? {
            let mut entry = entry.map_err(arc)?;
            let rel = clean_path(&entry.path().map_err(arc)?)?;
            match entry.header().entry_type() {
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let staged = cs.stage(&mut entry, None).map_err(|e| match e {
                        ContentError::Io { source, .. } if is_read_error(&source) => arc(source),
                        e => e.into(),
                    })?;
                    files.insert(rel, staged);
                }
                tar::EntryType::Symlink | tar::EntryType::Link => {
                    if let Some(t) = entry.link_name().map_err(arc)? {
                        let base = if entry.header().entry_type() == tar::EntryType::Symlink {
                            rel.parent().unwrap_or(Path::new("")).join(t)
                        } else {
                            t.into_owned()
                        };
                        links.insert(rel, base);
                    }
                }
                _ => {}
            }
        }
        Ok(StagedArchive { files, links })
    }

    /// The staged file at `rel`, following the archive's own links (a few hops).
    fn resolve(&self, rel: &Path) -> Option<PathBuf> {
        let mut cur = normalize(rel)?;
        for _ in 0..8 {
            if self.files.contains_key(&cur) {
                return Some(cur);
            }
            cur = normalize(self.links.get(&cur)?)?;
        }
        None
    }

    fn take(&mut self, rel: &str) -> Result<Staged, ImportError> {
        self.resolve(Path::new(rel))
            .and_then(|p| self.files.remove(&p))
            .ok_or_else(|| ImportError::MissingFile(rel.to_owned()))
    }

    fn read_file(&self, rel: &str) -> Result<Option<Vec<u8>>, ImportError> {
        let Some(p) = self.resolve(Path::new(rel)) else {
            return Ok(None);
        };
        let staged = &self.files[&p];
        let f = File::open(staged.path()).map_err(io_at("cannot open", staged.path()))?;
        read_limited(f, rel).map(Some)
    }
}

/// A tar read error surfaces through the writer side of io::copy as well;
/// writes to the ingest dir fail with other kinds (ENOSPC, EIO).
fn is_read_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData | io::ErrorKind::InvalidInput
    )
}

/// `a/./b/../c` → `a/c`; None if it climbs above the root.
fn normalize(p: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            std::path::Component::Normal(n) => out.push(n),
            std::path::Component::ParentDir if !out.pop() => return None,
            _ => {}
        }
    }
    Some(out)
}

impl Layout for StagedArchive {
    fn file(&mut self, rel: &str) -> Result<Option<Vec<u8>>, ImportError> {
        self.read_file(rel)
    }

    fn store_blob(&mut self, cs: &ContentStore, d: &Descriptor) -> Result<bool, ImportError> {
        let rel = format!("blobs/sha256/{}", d.digest.hex());
        if cs.contains(&d.digest) {
            return Ok(false);
        }
        let staged = self
            .take(&rel)
            .map_err(|_| ImportError::MissingBlob(d.digest.clone()))?;
        check_staged(&staged, &d.digest, d.size)?;
        Ok(cs.commit(staged)?)
    }
}

fn check_staged(s: &Staged, digest: &Digest, size: u64) -> Result<(), ContentError> {
    if s.digest != *digest {
        return Err(ContentError::DigestMismatch {
            expected: digest.clone(),
            actual: s.digest.clone(),
        });
    }
    if s.size != size {
        return Err(ContentError::SizeMismatch {
            digest: digest.clone(),
            expected: size,
            actual: s.size,
        });
    }
    Ok(())
}

impl Importer<'_> {
    /// docker-archive: manifest.json lists configs and layer tars by path.
    pub(crate) fn docker_archive(
        &mut self,
        ar: &mut StagedArchive,
        manifest_json: &[u8],
    ) -> Result<(), ImportError> {
        let entries: Vec<oci::DockerArchiveEntry> = parse_json("manifest.json", manifest_json)?;
        if entries.is_empty() {
            return Err(ImportError::MissingManifest(
                " (manifest.json lists none)".into(),
            ));
        }
        if self.opts.name.is_some() && entries.len() > 1 {
            return Err(ImportError::NameForMany(entries.len()));
        }
        for e in &entries {
            let cfg_data = ar
                .read_file(&e.config)?
                .ok_or_else(|| ImportError::MissingFile(e.config.clone()))?;
            let cfg: ImageConfig = parse_json(&e.config, &cfg_data)?;
            if cfg.rootfs.diff_ids.len() != e.layers.len() {
                return Err(ImportError::LayerCount {
                    layers: e.layers.len(),
                    diff_ids: cfg.rootfs.diff_ids.len(),
                });
            }
            let (config, _, new) = self.cs.ingest(&mut &cfg_data[..], None)?;
            self.note(&config, new);
            let mut layers = Vec::new();
            let mut descs = Vec::new();
            for (path, diff_id) in e.layers.iter().zip(&cfg.rootfs.diff_ids) {
                let (digest, size, media_type) = self.docker_layer(ar, path)?;
                descs.push(Descriptor::new(media_type, digest.clone(), size));
                layers.push(LayerRecord {
                    digest,
                    size,
                    media_type: media_type.to_owned(),
                    diff_id: diff_id.clone(),
                });
            }
            // berth stores an OCI manifest for the image, made from the archive's entry.
            let manifest = Manifest {
                schema_version: 2,
                media_type: Some(oci::OCI_MANIFEST.to_owned()),
                config: Descriptor::new(oci::OCI_CONFIG, config.clone(), cfg_data.len() as u64),
                layers: descs,
                annotations: BTreeMap::new(),
                extra: BTreeMap::new(),
            };
            let bytes = serde_json::to_vec(&manifest).map_err(|e| ImportError::BadJson {
                what: "generated manifest".into(),
                error: e.to_string(),
            })?;
            let (mdigest, new) = self.cs.put_bytes(&bytes)?;
            self.note(&mdigest, new);
            let mut names: Vec<Option<&str>> =
                e.repo_tags.iter().map(|t| Some(t.as_str())).collect();
            if names.is_empty() || self.opts.name.is_some() {
                names = vec![None];
            }
            for own in names {
                self.out.records.push(ImageRecord {
                    name: image_name(own, self.opts.name.as_deref(), &mdigest)?,
                    manifest: mdigest.clone(),
                    manifest_size: bytes.len() as u64,
                    manifest_media_type: oci::OCI_MANIFEST.to_owned(),
                    index: None,
                    platform: Platform {
                        architecture: cfg.architecture.clone(),
                        os: cfg.os.clone(),
                        variant: cfg.variant.clone(),
                    },
                    config: config.clone(),
                    config_size: cfg_data.len() as u64,
                    config_media_type: oci::OCI_CONFIG.to_owned(),
                    layers: layers.clone(),
                    imported_at: now_micros(),
                });
            }
        }
        Ok(())
    }

    /// A layer tar of a docker archive, into the store; its compression is
    /// read from its first bytes (docker writes plain tars).
    fn docker_layer(
        &mut self,
        ar: &mut StagedArchive,
        path: &str,
    ) -> Result<(Digest, u64, &'static str), ImportError> {
        let resolved = ar
            .resolve(Path::new(path))
            .ok_or_else(|| ImportError::MissingFile(path.to_owned()))?;
        let (digest, size, magic) = {
            let s = &ar.files[&resolved];
            let mut magic = [0u8; 4];
            let mut f = File::open(s.path()).map_err(io_at("cannot open", s.path()))?;
            let n = f.read(&mut magic).map_err(io_at("cannot read", s.path()))?;
            (s.digest.clone(), s.size, magic[..n].to_vec())
        };
        let media_type = match magic.as_slice() {
            [0x1f, 0x8b, ..] => oci::OCI_LAYER_GZIP,
            [0x28, 0xb5, 0x2f, 0xfd] => {
                return Err(UnpackError::UnsupportedCompression("zstd").into())
            }
            _ => oci::OCI_LAYER,
        };
        if self.cs.contains(&digest) {
            return Ok((digest, size, media_type));
        }
        // A layer listed twice (shared by two images) was committed already.
        if let Some(s) = ar.files.remove(&resolved) {
            let new = self.cs.commit(s)?;
            self.note(&digest, new);
        }
        Ok((digest, size, media_type))
    }
}

/// Imports a tar (plain or gzip): docker-archive if it has manifest.json,
/// else an OCI layout.
pub fn archive(
    cs: &ContentStore,
    reader: &mut dyn Read,
    path: &Path,
    opts: &ImportOptions,
) -> (Imported, Result<(), ImportError>) {
    let mut imp = Importer {
        cs,
        opts,
        out: Imported::default(),
    };
    let r = (|| {
        let mut ar = StagedArchive::read(cs, reader)?;
        if let Some(m) = ar.read_file("manifest.json")? {
            imp.docker_archive(&mut ar, &m)
        } else if ar.resolve(Path::new("index.json")).is_some() {
            imp.oci_layout(&mut ar, path)
        } else {
            Err(ImportError::NotAnImage {
                path: path.to_owned(),
                reason:
                    "neither manifest.json (docker-archive) nor index.json (OCI layout) in the tar"
                        .into(),
            })
        }
    })();
    (imp.out, r)
}

/// Opens a tar file, transparently gunzipping it.
pub fn open_archive(path: &Path) -> Result<Box<dyn Read>, ImportError> {
    let mut f = File::open(path).map_err(io_at("cannot open", path))?;
    let mut magic = [0u8; 2];
    let n = f.read(&mut magic).map_err(io_at("cannot read", path))?;
    f.rewind().map_err(io_at("cannot read", path))?;
    let r = BufReader::with_capacity(256 * 1024, f);
    Ok(if n == 2 && magic == [0x1f, 0x8b] {
        Box::new(flate2::read::MultiGzDecoder::new(r))
    } else {
        Box::new(r)
    })
}
