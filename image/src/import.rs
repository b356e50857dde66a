//! Reading images in: an OCI image layout directory, an OCI layout in a tar
//! (`podman save --format oci-archive`), or a `docker save` / `podman save`
//! tar (docker-archive: manifest.json + config + layer tars), optionally
//! gzip-compressed. Every blob is verified against its digest as it is copied
//! into the content store; the records are committed by the caller
//! ([`crate::ImageStore`]) only once everything is in.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{self, BufReader, Read, Seek};
use std::path::{Path, PathBuf};

use crate::content::{ContentError, ContentStore, Staged};
use crate::digest::Digest;
use crate::meta::{ImageRecord, LayerRecord};
use crate::oci::{self, Compression, Descriptor, ImageConfig, Index, Kind, Manifest, Platform};
use crate::reference::{Reference, ReferenceError};
use crate::unpack::{clean_path, stream_err, EofReader, UnpackError};

/// Manifests, indexes, configs and manifest.json are read whole, up to this.
pub const MAX_JSON: u64 = 16 << 20;
/// Indexes nested in indexes, at most.
const MAX_DEPTH: usize = 4;

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("{} is not an image: {reason}", .path.display())]
    NotAnImage { path: PathBuf, reason: String },
    #[error("unsupported OCI layout version {0:?}")]
    LayoutVersion(String),
    #[error("{what}: unknown media type {media_type:?}")]
    UnknownMediaType { what: String, media_type: String },
    #[error("blob {0} is missing from the image")]
    MissingBlob(Digest),
    #[error("{0:?} is missing from the archive")]
    MissingFile(String),
    #[error("the image has no manifest{0}")]
    MissingManifest(String),
    #[error("no manifest for platform {wanted} (the index has: {available})")]
    NoPlatform { wanted: String, available: String },
    #[error("{what} is not valid JSON of its kind: {error}")]
    BadJson { what: String, error: String },
    #[error("{what} is larger than {MAX_JSON} bytes")]
    TooLarge { what: String },
    #[error("the manifest has {layers} layers, the config {diff_ids} diff ids")]
    LayerCount { layers: usize, diff_ids: usize },
    #[error("index nesting deeper than {MAX_DEPTH}")]
    TooDeep,
    #[error("--name needs exactly one image, the archive has {0}")]
    NameForMany(usize),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
    #[error("archive: {0}")]
    Archive(#[from] UnpackError),
    #[error("{what} {}: {source}", .path.display())]
    Io {
        what: &'static str,
        path: PathBuf,
        source: io::Error,
    },
}

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> ImportError + 'a {
    move |source| ImportError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

fn parse_json<T: serde::de::DeserializeOwned>(what: &str, data: &[u8]) -> Result<T, ImportError> {
    serde_json::from_slice(data).map_err(|e| ImportError::BadJson {
        what: what.to_owned(),
        error: e.to_string(),
    })
}

/// What an import wants, besides the path.
#[derive(Debug, Clone)]
pub struct ImportOptions {
    /// The name of the imported image (only when the input holds one image).
    pub name: Option<String>,
    /// Which manifest of a multi-platform index to take.
    pub platform: Platform,
    /// Unpack the layers into snapshots now (else at the first rootfs).
    pub unpack: bool,
}

impl Default for ImportOptions {
    fn default() -> Self {
        ImportOptions {
            name: None,
            platform: Platform::host(),
            unpack: true,
        }
    }
}

/// What was read: records to commit and the blobs that are new in the store
/// (to delete again if the import fails).
#[derive(Default)]
pub struct Imported {
    pub records: Vec<ImageRecord>,
    pub new_blobs: Vec<Digest>,
}

/// Where the files of an OCI layout come from.
trait Layout {
    /// A file of the layout by relative path; None if absent.
    fn file(&mut self, rel: &str) -> Result<Option<Vec<u8>>, ImportError>;
    /// Copies a blob into the content store, verified; true if new.
    fn store_blob(&mut self, cs: &ContentStore, d: &Descriptor) -> Result<bool, ImportError>;
}

struct DirLayout<'a>(&'a Path);

impl Layout for DirLayout<'_> {
    fn file(&mut self, rel: &str) -> Result<Option<Vec<u8>>, ImportError> {
        let p = self.0.join(rel);
        match File::open(&p) {
            Ok(f) => read_limited(f, rel).map(Some),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_at("cannot open", &p)(e)),
        }
    }

    fn store_blob(&mut self, cs: &ContentStore, d: &Descriptor) -> Result<bool, ImportError> {
        if cs.contains(&d.digest) {
            return Ok(false);
        }
        let p = self.0.join("blobs/sha256").join(d.digest.hex());
        let mut f = match File::open(&p) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImportError::MissingBlob(d.digest.clone()))
            }
            Err(e) => return Err(io_at("cannot open", &p)(e)),
        };
        Ok(cs.ingest(&mut f, Some((&d.digest, d.size)))?.2)
    }
}

fn read_limited(r: impl Read, what: &str) -> Result<Vec<u8>, ImportError> {
    let mut buf = Vec::new();
    r.take(MAX_JSON + 1)
        .read_to_end(&mut buf)
        .map_err(io_at("cannot read", Path::new(what)))?;
    if buf.len() as u64 > MAX_JSON {
        return Err(ImportError::TooLarge {
            what: what.to_owned(),
        });
    }
    Ok(buf)
}

/// An archive's regular files, staged in the ingest dir with their digests.
struct StagedArchive {
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

pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The name an image gets: the caller's, else its own, else its digest.
fn image_name(
    own: Option<&str>,
    opt: Option<&str>,
    manifest: &Digest,
) -> Result<String, ImportError> {
    match (opt, own) {
        (Some(n), _) => Ok(Reference::parse(n)?.to_string()),
        (None, Some(n)) if !Reference::is_bare_tag(n) => Ok(Reference::parse(n)?.to_string()),
        _ => Ok(manifest.to_string()),
    }
}

struct Importer<'a> {
    cs: &'a ContentStore,
    opts: &'a ImportOptions,
    out: Imported,
}

impl Importer<'_> {
    fn note(&mut self, d: &Digest, new: bool) {
        if new {
            self.out.new_blobs.push(d.clone());
        }
    }

    /// A small blob, stored and returned.
    fn small_blob(
        &mut self,
        src: &mut dyn Layout,
        d: &Descriptor,
        what: &str,
    ) -> Result<Vec<u8>, ImportError> {
        if d.size > MAX_JSON {
            return Err(ImportError::TooLarge { what: what.into() });
        }
        let new = src.store_blob(self.cs, d)?;
        self.note(&d.digest, new);
        Ok(self.cs.read_small(&d.digest, MAX_JSON)?)
    }

    fn oci_layout(&mut self, src: &mut dyn Layout, path: &Path) -> Result<(), ImportError> {
        let not_image = |reason: &str| ImportError::NotAnImage {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let layout = src
            .file("oci-layout")?
            .ok_or_else(|| not_image("no oci-layout file"))?;
        let v: serde_json::Value = parse_json("oci-layout", &layout)?;
        match v["imageLayoutVersion"].as_str() {
            Some("1.0.0") => {}
            other => return Err(ImportError::LayoutVersion(format!("{other:?}"))),
        }
        let index = src
            .file("index.json")?
            .ok_or_else(|| not_image("no index.json"))?;
        let index: Index = parse_json("index.json", &index)?;
        if index.manifests.is_empty() {
            return Err(ImportError::MissingManifest(
                " (index.json lists none)".into(),
            ));
        }
        if self.opts.name.is_some() && index.manifests.len() > 1 {
            return Err(ImportError::NameForMany(index.manifests.len()));
        }
        for desc in &index.manifests {
            let own = desc.annotations.get(oci::REF_NAME).map(String::as_str);
            self.descriptor(src, desc, None, own, 0)?;
        }
        Ok(())
    }

    /// A manifest or an index (choosing the platform's manifest).
    fn descriptor(
        &mut self,
        src: &mut dyn Layout,
        desc: &Descriptor,
        index: Option<&Digest>,
        own: Option<&str>,
        depth: usize,
    ) -> Result<(), ImportError> {
        if depth > MAX_DEPTH {
            return Err(ImportError::TooDeep);
        }
        match oci::kind_of(&desc.media_type) {
            Some(Kind::Manifest) => self.manifest(src, desc, index, own),
            Some(Kind::Index) => {
                // The index is only read, not kept: records name its manifest.
                if desc.size > MAX_JSON {
                    return Err(ImportError::TooLarge {
                        what: "index".into(),
                    });
                }
                let data = self.small_blob(src, desc, "index")?;
                let idx: Index = parse_json(&format!("index {}", desc.digest), &data)?;
                let want = &self.opts.platform;
                let chosen = idx
                    .manifests
                    .iter()
                    .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
                    .or_else(|| match idx.manifests.as_slice() {
                        [only] if only.platform.is_none() => Some(only),
                        _ => None,
                    });
                let Some(chosen) = chosen.cloned() else {
                    let available: Vec<String> = idx
                        .manifests
                        .iter()
                        .map(|m| m.platform.as_ref().map_or("?".into(), |p| p.to_string()))
                        .collect();
                    return Err(ImportError::NoPlatform {
                        wanted: want.to_string(),
                        available: available.join(", "),
                    });
                };
                self.descriptor(src, &chosen, Some(&desc.digest), own, depth + 1)
            }
            _ => Err(ImportError::UnknownMediaType {
                what: format!("manifest {}", desc.digest),
                media_type: desc.media_type.clone(),
            }),
        }
    }

    fn manifest(
        &mut self,
        src: &mut dyn Layout,
        desc: &Descriptor,
        index: Option<&Digest>,
        own: Option<&str>,
    ) -> Result<(), ImportError> {
        let data = self.small_blob(src, desc, "manifest")?;
        let m: Manifest = parse_json(&format!("manifest {}", desc.digest), &data)?;
        if let Some(mt) = &m.media_type {
            if oci::kind_of(mt) != Some(Kind::Manifest) {
                return Err(ImportError::UnknownMediaType {
                    what: format!("manifest {}", desc.digest),
                    media_type: mt.clone(),
                });
            }
        }
        if oci::kind_of(&m.config.media_type) != Some(Kind::Config) {
            return Err(ImportError::UnknownMediaType {
                what: format!("config {}", m.config.digest),
                media_type: m.config.media_type.clone(),
            });
        }
        let mut comps = Vec::new();
        for l in &m.layers {
            match oci::kind_of(&l.media_type) {
                Some(Kind::Layer(Compression::Zstd)) => {
                    return Err(UnpackError::UnsupportedCompression("zstd").into())
                }
                Some(Kind::Layer(c)) => comps.push(c),
                _ => {
                    return Err(ImportError::UnknownMediaType {
                        what: format!("layer {}", l.digest),
                        media_type: l.media_type.clone(),
                    })
                }
            }
        }
        let cfg_data = self.small_blob(src, &m.config, "config")?;
        let cfg: ImageConfig = parse_json(&format!("config {}", m.config.digest), &cfg_data)?;
        if cfg.rootfs.diff_ids.len() != m.layers.len() {
            return Err(ImportError::LayerCount {
                layers: m.layers.len(),
                diff_ids: cfg.rootfs.diff_ids.len(),
            });
        }
        let mut layers = Vec::new();
        for (l, diff_id) in m.layers.iter().zip(&cfg.rootfs.diff_ids) {
            let new = src.store_blob(self.cs, l)?;
            self.note(&l.digest, new);
            layers.push(LayerRecord {
                digest: l.digest.clone(),
                size: l.size,
                media_type: l.media_type.clone(),
                diff_id: diff_id.clone(),
            });
        }
        let platform = Platform {
            architecture: cfg.architecture.clone(),
            os: cfg.os.clone(),
            variant: cfg.variant.clone(),
        };
        self.out.records.push(ImageRecord {
            name: image_name(own, self.opts.name.as_deref(), &desc.digest)?,
            manifest: desc.digest.clone(),
            manifest_size: desc.size,
            manifest_media_type: m
                .media_type
                .clone()
                .unwrap_or_else(|| desc.media_type.clone()),
            index: index.cloned(),
            platform,
            config: m.config.digest.clone(),
            config_size: m.config.size,
            config_media_type: m.config.media_type.clone(),
            layers,
            imported_at: now_micros(),
        });
        Ok(())
    }

    /// docker-archive: manifest.json lists configs and layer tars by path.
    fn docker_archive(
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

/// Imports an OCI layout directory.
pub fn oci_dir(
    cs: &ContentStore,
    dir: &Path,
    opts: &ImportOptions,
) -> (Imported, Result<(), ImportError>) {
    let mut imp = Importer {
        cs,
        opts,
        out: Imported::default(),
    };
    let r = imp.oci_layout(&mut DirLayout(dir), dir);
    (imp.out, r)
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

/// Whether `path` is a directory (an OCI layout) rather than an archive.
pub fn is_dir(path: &Path) -> Result<bool, ImportError> {
    Ok(fs::metadata(path)
        .map_err(io_at("cannot open", path))?
        .is_dir())
}
