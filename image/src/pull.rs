//! Pulling from a registry (OCI distribution spec v2, Docker registry v2):
//! bearer-token and basic auth from the registry's `WWW-Authenticate`
//! challenge, manifest lists / indexes resolved to one platform, blobs
//! downloaded to `<root>/pull/<hex>.partial` and resumed with a Range request
//! after a broken transfer (also by the next pull after a crash), verified,
//! then committed like an import: all or nothing, under the store's lock.
//! The HTTP side is registry_client.rs.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::content::ContentError;
use crate::digest::Digest;
use crate::import::{
    self, check_manifest, choose_platform, parse_config, ImportError, ImportOptions, Imported,
};
use crate::meta::{ImageRecord, LayerRecord};
use crate::oci::{self, Index, Kind, Manifest, Platform};
use crate::reference::{Reference, ReferenceError};
use crate::registries::Registries;
use crate::registry_client::Client;
use crate::{Error, ImageStore};

#[derive(Debug, thiserror::Error)]
pub enum PullError {
    #[error("{url}: HTTP {status}: {message}")]
    Http {
        url: String,
        status: u16,
        message: String,
    },
    #[error("{url}: {message}")]
    Transport { url: String, message: String },
    #[error("{registry}: authentication failed: {message}")]
    Auth { registry: String, message: String },
    #[error("manifest {reference}: the registry sent content with digest {actual}")]
    ManifestDigest { reference: String, actual: Digest },
    #[error(transparent)]
    Import(#[from] ImportError),
    #[error(transparent)]
    Content(#[from] ContentError),
    #[error(transparent)]
    Reference(#[from] ReferenceError),
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
) -> impl FnOnce(io::Error) -> PullError + 'a {
    move |source| PullError::Io {
        what,
        path: path.to_owned(),
        source,
    }
}

#[derive(Debug, Clone)]
pub struct PullOptions {
    pub platform: Platform,
    /// Plain HTTP instead of HTTPS. None: only for loopback registries
    /// (localhost, 127.0.0.0/8, [::1]), as docker does.
    pub plain_http: Option<bool>,
    /// user, password (basic auth, or to get a bearer token).
    pub credentials: Option<(String, String)>,
    /// Attempts per blob after the first, each resuming where the last stopped.
    pub retries: u32,
    pub unpack: bool,
    pub timeout: Duration,
    /// Mirrors asked before the registry (berthd.toml's `[[registry]]`).
    pub registries: Registries,
}

impl Default for PullOptions {
    fn default() -> Self {
        PullOptions {
            platform: Platform::host(),
            plain_http: None,
            credentials: None,
            retries: 3,
            unpack: true,
            timeout: Duration::from_secs(30),
            registries: Registries::default(),
        }
    }
}

/// Download progress of one blob, for progress bars.
#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub digest: Digest,
    pub done: u64,
    pub total: u64,
    /// Bytes that were already there from an earlier, broken transfer.
    pub resumed_from: u64,
}

/// A platform's manifest: (body, media type, digest, the index's digest).
type PlatformManifest = (Vec<u8>, String, Digest, Option<Digest>);

/// The manifest `r` names for `opts.platform` (through its index, if it has
/// one).
fn platform_manifest(
    c: &mut Client,
    r: &Reference,
    opts: &PullOptions,
) -> Result<PlatformManifest, Error> {
    let tag_or_digest = match (&r.digest, &r.tag) {
        (Some(d), _) => d.to_string(),
        (None, Some(t)) => t.clone(),
        (None, None) => "latest".into(),
    };
    let (body, mt, digest) = c.manifest(&tag_or_digest, r.digest.as_ref())?;
    if oci::kind_of(&mt) != Some(Kind::Index) {
        return Ok((body, mt, digest, None));
    }
    let idx: Index = serde_json::from_slice(&body).map_err(|e| ImportError::BadJson {
        what: "index".into(),
        error: e.to_string(),
    })?;
    let chosen = choose_platform(&idx, &opts.platform)?;
    let (body, mt, platform_digest) =
        c.manifest(&chosen.digest.to_string(), Some(&chosen.digest))?;
    Ok((body, mt, platform_digest, Some(digest)))
}

/// The first endpoint of `r` (its mirrors, then the registry) that serves
/// its manifest: a client there and what platform_manifest found. A
/// mirror's failure is passed over; the registry's is the error.
fn first_answer(r: &Reference, opts: &PullOptions) -> Result<(Client, PlatformManifest), Error> {
    let mut last = None;
    for e in opts.registries.endpoints(r) {
        let mut c = Client::new(&e, opts);
        match platform_manifest(&mut c, r, opts) {
            Ok(found) => return Ok((c, found)),
            Err(err) => last = Some(err),
        }
    }
    Err(last.unwrap_or_else(|| {
        PullError::Transport {
            url: r.name(),
            message: "no registry to ask".into(),
        }
        .into()
    }))
}

/// The digest of the manifest a pull of `reference` would record now (the
/// image's `manifest`), asked of the registry without downloading any blob:
/// what auto-update compares with the local image.
pub fn remote_digest(reference: &str, opts: &PullOptions) -> Result<Digest, Error> {
    let r = Reference::parse(reference).map_err(PullError::from)?;
    Ok(first_answer(&r, opts)?.1 .2)
}

impl ImageStore {
    /// Pulls `reference` (`busybox`, `localhost:5000/app:v1`, `…@sha256:…`)
    /// and records it under its normalized name. `progress` is called as
    /// layer bytes arrive.
    pub fn pull(
        &self,
        reference: &str,
        opts: &PullOptions,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<ImageRecord, Error> {
        let r = Reference::parse(reference).map_err(PullError::from)?;
        let (mut c, (body, mt, digest, index)) = first_answer(&r, opts)?;
        if oci::kind_of(&mt) != Some(Kind::Manifest) {
            return Err(ImportError::UnknownMediaType {
                what: format!("manifest {digest}"),
                media_type: mt,
            }
            .into());
        }
        let m: Manifest = serde_json::from_slice(&body).map_err(|e| ImportError::BadJson {
            what: format!("manifest {digest}"),
            error: e.to_string(),
        })?;
        check_manifest(&m, &digest)?;
        let cfg_data = c.small_blob(&m.config)?;
        let cfg = parse_config(&m, &cfg_data)?;

        let dir = self.root().join("pull");
        fs::create_dir_all(&dir).map_err(|e| Error::Io {
            what: "cannot create",
            path: dir.clone(),
            source: e,
        })?;
        let mut files = Vec::new();
        for l in &m.layers {
            if !self.content().contains(&l.digest) {
                files.push((l, c.blob(l, &dir, opts.retries, progress)?));
            }
        }

        let _lock = self.lock()?;
        let mut imported = Imported::default();
        let r2 = (|| {
            for data in [&body, &cfg_data] {
                let (d, new) = self.content().put_bytes(data)?;
                if new {
                    imported.new_blobs.push(d);
                }
            }
            for (l, path) in &files {
                if self.content().adopt(path, &l.digest, l.size)? {
                    imported.new_blobs.push(l.digest.clone());
                }
            }
            let name = Reference {
                digest: if r.tag.is_some() {
                    None
                } else {
                    r.digest.clone()
                },
                ..r.clone()
            };
            imported.records.push(ImageRecord {
                name: name.to_string(),
                manifest: digest.clone(),
                manifest_size: body.len() as u64,
                manifest_media_type: mt.clone(),
                index,
                platform: Platform {
                    architecture: cfg.architecture.clone(),
                    os: cfg.os.clone(),
                    variant: cfg.variant.clone(),
                },
                config: m.config.digest.clone(),
                config_size: m.config.size,
                config_media_type: m.config.media_type.clone(),
                layers: m
                    .layers
                    .iter()
                    .zip(&cfg.rootfs.diff_ids)
                    .map(|(l, diff_id)| LayerRecord {
                        digest: l.digest.clone(),
                        size: l.size,
                        media_type: l.media_type.clone(),
                        diff_id: diff_id.clone(),
                    })
                    .collect(),
                imported_at: import::now_micros(),
            });
            Ok::<_, Error>(())
        })();
        let import_opts = ImportOptions {
            unpack: opts.unpack,
            ..ImportOptions::default()
        };
        let mut recs = self.finish_import(imported, r2, &import_opts)?;
        Ok(recs.remove(0))
    }
}
