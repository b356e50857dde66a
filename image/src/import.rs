//! Reading images in: an OCI image layout directory, an OCI layout in a tar
//! (`podman save --format oci-archive`), or a `docker save` / `podman save`
//! tar (docker-archive: manifest.json + config + layer tars), optionally
//! gzip-compressed. Every blob is verified against its digest as it is copied
//! into the content store; the records are committed by the caller
//! ([`crate::ImageStore`]) only once everything is in. Tar inputs: [`crate::archive`].

use std::fs::{self, File};
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use crate::content::{ContentError, ContentStore};
use crate::digest::Digest;
use crate::meta::{ImageRecord, LayerRecord};
use crate::oci::{self, Compression, Descriptor, ImageConfig, Index, Kind, Manifest, Platform};
use crate::reference::{Reference, ReferenceError};
use crate::unpack::UnpackError;

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

pub(crate) fn io_at<'a>(
    what: &'static str,
    path: &'a Path,
) -> impl FnOnce(io::Error) -> ImportError + 'a {
    move |source| ImportError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

pub(crate) fn parse_json<T: serde::de::DeserializeOwned>(
    what: &str,
    data: &[u8],
) -> Result<T, ImportError> {
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
pub(crate) trait Layout {
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

pub(crate) fn read_limited(r: impl Read, what: &str) -> Result<Vec<u8>, ImportError> {
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

pub(crate) fn now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// The name an image gets: the caller's, else its own, else its digest.
pub(crate) fn image_name(
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

pub(crate) struct Importer<'a> {
    pub(crate) cs: &'a ContentStore,
    pub(crate) opts: &'a ImportOptions,
    pub(crate) out: Imported,
}

impl Importer<'_> {
    pub(crate) fn note(&mut self, d: &Digest, new: bool) {
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

    pub(crate) fn oci_layout(
        &mut self,
        src: &mut dyn Layout,
        path: &Path,
    ) -> Result<(), ImportError> {
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
                let chosen = choose_platform(&idx, &self.opts.platform)?;
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
        check_manifest(&m, &desc.digest)?;
        let cfg_data = self.small_blob(src, &m.config, "config")?;
        let cfg = parse_config(&m, &cfg_data)?;
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
}

/// The manifest of `want` in an index (or its only entry, if that has no
/// platform).
pub(crate) fn choose_platform(idx: &Index, want: &Platform) -> Result<Descriptor, ImportError> {
    let chosen = idx
        .manifests
        .iter()
        .find(|m| m.platform.as_ref().is_some_and(|p| want.matches(p)))
        .or_else(|| match idx.manifests.as_slice() {
            [only] if only.platform.is_none() => Some(only),
            _ => None,
        });
    chosen.cloned().ok_or_else(|| {
        let available: Vec<String> = idx
            .manifests
            .iter()
            .map(|m| m.platform.as_ref().map_or("?".into(), |p| p.to_string()))
            .collect();
        ImportError::NoPlatform {
            wanted: want.to_string(),
            available: available.join(", "),
        }
    })
}

/// Refuses a manifest whose own, config or layer media types berth cannot use.
pub(crate) fn check_manifest(m: &Manifest, digest: &Digest) -> Result<(), ImportError> {
    if let Some(mt) = &m.media_type {
        if oci::kind_of(mt) != Some(Kind::Manifest) {
            return Err(ImportError::UnknownMediaType {
                what: format!("manifest {digest}"),
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
    for l in &m.layers {
        match oci::kind_of(&l.media_type) {
            Some(Kind::Layer(Compression::Zstd)) => {
                return Err(UnpackError::UnsupportedCompression("zstd").into())
            }
            Some(Kind::Layer(_)) => {}
            _ => {
                return Err(ImportError::UnknownMediaType {
                    what: format!("layer {}", l.digest),
                    media_type: l.media_type.clone(),
                })
            }
        }
    }
    Ok(())
}

/// Parses an image config and checks it has a diff id per layer.
pub(crate) fn parse_config(m: &Manifest, data: &[u8]) -> Result<ImageConfig, ImportError> {
    let cfg: ImageConfig = parse_json(&format!("config {}", m.config.digest), data)?;
    if cfg.rootfs.diff_ids.len() != m.layers.len() {
        return Err(ImportError::LayerCount {
            layers: m.layers.len(),
            diff_ids: cfg.rootfs.diff_ids.len(),
        });
    }
    Ok(cfg)
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

/// Whether `path` is a directory (an OCI layout) rather than an archive.
pub fn is_dir(path: &Path) -> Result<bool, ImportError> {
    Ok(fs::metadata(path)
        .map_err(io_at("cannot open", path))?
        .is_dir())
}
pub use crate::archive::{archive, open_archive};
