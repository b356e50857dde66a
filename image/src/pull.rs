//! Pulling from a registry (OCI distribution spec v2, Docker registry v2):
//! bearer-token and basic auth from the registry's `WWW-Authenticate`
//! challenge, manifest lists / indexes resolved to one platform, blobs
//! downloaded to `<root>/pull/<hex>.partial` and resumed with a Range request
//! after a broken transfer (also by the next pull after a crash), verified,
//! then committed like an import: all or nothing, under the store's lock.
//!
//! A small client over ureq (blocking, rustls) rather than oci-client, which
//! is async over reqwest/tokio: this crate is blocking (berthd calls it from
//! spawn_blocking) and needs a handful of GETs.

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::content::ContentError;
use crate::digest::Digest;
use crate::import::{
    self, check_manifest, choose_platform, parse_config, ImportError, ImportOptions, Imported,
    MAX_JSON,
};
use crate::meta::{ImageRecord, LayerRecord};
use crate::oci::{self, Descriptor, Index, Kind, Manifest, Platform};
use crate::reference::{Reference, ReferenceError, DEFAULT_REGISTRY};
use crate::registries::{Endpoint, Registries};
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

fn io_at<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> PullError + 'a {
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

const MANIFEST_TYPES: &[&str] = &[
    oci::OCI_MANIFEST,
    oci::OCI_INDEX,
    oci::DOCKER_MANIFEST,
    oci::DOCKER_LIST,
];

fn is_loopback(host: &str) -> bool {
    let h = host.rsplit_once(':').map_or(host, |(h, port)| {
        if port.bytes().all(|b| b.is_ascii_digit()) {
            h
        } else {
            host
        }
    });
    h == "localhost" || h.starts_with("127.") || h == "[::1]"
}

/// What a query value keeps as is: RFC 3986's unreserved characters.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'_')
    .remove(b'.')
    .remove(b'~');

/// Percent-encodes a query value.
fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

/// `Basic` credentials (RFC 7617): base64 of `user:password`.
fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{password}")))
}

/// `Bearer realm="https://auth",service="registry",scope="repository:x:pull"`
/// → ("bearer", params).
pub fn parse_challenge(h: &str) -> (String, Vec<(String, String)>) {
    let (scheme, rest) = h.trim().split_once(' ').unwrap_or((h.trim(), ""));
    let mut params = Vec::new();
    let mut rest = rest.trim();
    while let Some((k, r)) = rest.split_once('=') {
        let k = k.trim().trim_start_matches(',').trim().to_ascii_lowercase();
        let r = r.trim_start();
        let (v, r) = if let Some(q) = r.strip_prefix('"') {
            match q.find('"') {
                Some(end) => (&q[..end], &q[end + 1..]),
                None => (q, ""),
            }
        } else {
            match r.find(',') {
                Some(end) => (&r[..end], &r[end..]),
                None => (r, ""),
            }
        };
        params.push((k, v.to_owned()));
        rest = r.trim_start_matches([',', ' ']);
    }
    (scheme.to_ascii_lowercase(), params)
}

struct Client {
    agent: ureq::Agent,
    base: String,
    registry: String,
    repo: String,
    creds: Option<(String, String)>,
    auth: Option<String>,
}

type Response = ureq::http::Response<ureq::Body>;

impl Client {
    fn new(e: &Endpoint, opts: &PullOptions) -> Client {
        let host = if e.host == DEFAULT_REGISTRY {
            "registry-1.docker.io"
        } else {
            &e.host
        };
        let plain = opts
            .plain_http
            .unwrap_or_else(|| e.insecure || is_loopback(host));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(opts.timeout))
            .timeout_recv_response(Some(opts.timeout))
            .user_agent(concat!("berth/", env!("CARGO_PKG_VERSION")))
            .build()
            .into();
        Client {
            agent,
            base: format!("{}://{host}", if plain { "http" } else { "https" }),
            registry: e.host.clone(),
            repo: e.repository.clone(),
            // The caller's credentials are the registry's: a mirror (another
            // party) never sees them.
            creds: if e.mirror {
                None
            } else {
                opts.credentials.clone()
            },
            auth: None,
        }
    }

    fn transport(url: &str, e: impl std::fmt::Display) -> PullError {
        PullError::Transport {
            url: url.to_owned(),
            message: e.to_string(),
        }
    }

    fn auth_err(&self, message: impl Into<String>) -> PullError {
        PullError::Auth {
            registry: self.registry.clone(),
            message: message.into(),
        }
    }

    /// GET `/v2/<repo>/<path>`, answering one auth challenge.
    fn get(&mut self, path: &str, accept: &[&str], range_from: u64) -> Result<Response, PullError> {
        let url = format!("{}/v2/{}/{path}", self.base, self.repo);
        for attempt in 0..2 {
            let mut req = self.agent.get(&url);
            if !accept.is_empty() {
                req = req.header("Accept", accept.join(", "));
            }
            if let Some(a) = &self.auth {
                req = req.header("Authorization", a);
            }
            if range_from > 0 {
                req = req.header("Range", format!("bytes={range_from}-"));
            }
            let mut resp = req.call().map_err(|e| Self::transport(&url, e))?;
            let status = resp.status().as_u16();
            if status == 401 && attempt == 0 {
                let challenge = resp
                    .headers()
                    .get("www-authenticate")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("")
                    .to_owned();
                self.authenticate(&challenge)?;
                continue;
            }
            if (200..300).contains(&status) {
                return Ok(resp);
            }
            let message = resp
                .body_mut()
                .with_config()
                .limit(4096)
                .read_to_string()
                .unwrap_or_default();
            return Err(match status {
                401 | 403 => self.auth_err(format!("HTTP {status} for {url}: {}", message.trim())),
                _ => PullError::Http {
                    url,
                    status,
                    message: message.trim().to_owned(),
                },
            });
        }
        Err(self.auth_err("the registry refused the credentials it asked for"))
    }

    fn authenticate(&mut self, challenge: &str) -> Result<(), PullError> {
        let (scheme, params) = parse_challenge(challenge);
        let param = |k: &str| params.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        let basic = self.creds.as_ref().map(|(u, p)| basic_auth(u, p));
        match scheme.as_str() {
            "basic" => {
                self.auth = Some(
                    basic.ok_or_else(|| self.auth_err("the registry wants a user and password"))?,
                );
                Ok(())
            }
            "bearer" => {
                let realm = param("realm")
                    .ok_or_else(|| self.auth_err("bearer challenge without a realm"))?;
                let scope =
                    param("scope").unwrap_or_else(|| format!("repository:{}:pull", self.repo));
                let mut url = format!("{realm}?scope={}", encode(&scope));
                if let Some(service) = param("service") {
                    url.push_str(&format!("&service={}", encode(&service)));
                }
                let mut req = self.agent.get(&url);
                if let Some(b) = &basic {
                    req = req.header("Authorization", b);
                }
                let mut resp = req.call().map_err(|e| Self::transport(&url, e))?;
                if !resp.status().is_success() {
                    return Err(self.auth_err(format!(
                        "token endpoint {url}: HTTP {}",
                        resp.status().as_u16()
                    )));
                }
                let body = resp
                    .body_mut()
                    .with_config()
                    .limit(1 << 20)
                    .read_to_vec()
                    .map_err(|e| Self::transport(&url, e))?;
                let v: serde_json::Value = serde_json::from_slice(&body)
                    .map_err(|e| self.auth_err(format!("token endpoint: {e}")))?;
                let token = v["token"]
                    .as_str()
                    .or(v["access_token"].as_str())
                    .ok_or_else(|| self.auth_err("token endpoint sent no token"))?;
                self.auth = Some(format!("Bearer {token}"));
                Ok(())
            }
            "" => Err(self.auth_err("HTTP 401 without a WWW-Authenticate challenge")),
            other => Err(self.auth_err(format!("unsupported auth scheme {other:?}"))),
        }
    }

    /// A manifest or index by tag or digest: bytes, media type, digest.
    fn manifest(
        &mut self,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, String, Digest), PullError> {
        let mut resp = self.get(&format!("manifests/{reference}"), MANIFEST_TYPES, 0)?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let url = format!("manifests/{reference}");
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON)
            .read_to_vec()
            .map_err(|e| Self::transport(&url, e))?;
        let digest = Digest::of(&body);
        if expected.is_some_and(|e| *e != digest) {
            return Err(PullError::ManifestDigest {
                reference: reference.to_owned(),
                actual: digest,
            });
        }
        let v: serde_json::Value =
            serde_json::from_slice(&body).map_err(|e| ImportError::BadJson {
                what: url.clone(),
                error: e.to_string(),
            })?;
        let media_type = match v["mediaType"].as_str() {
            Some(m) => m.to_owned(),
            None => content_type.unwrap_or_default(),
        };
        Ok((body, media_type, digest))
    }

    /// A small blob (config), verified.
    fn small_blob(&mut self, d: &Descriptor) -> Result<Vec<u8>, PullError> {
        if d.size > MAX_JSON {
            return Err(ImportError::TooLarge {
                what: format!("blob {}", d.digest),
            }
            .into());
        }
        let url = format!("blobs/{}", d.digest);
        let mut resp = self.get(&url, &[], 0)?;
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_JSON)
            .read_to_vec()
            .map_err(|e| Self::transport(&url, e))?;
        let actual = Digest::of(&body);
        if actual != d.digest {
            return Err(ContentError::DigestMismatch {
                expected: d.digest.clone(),
                actual,
            }
            .into());
        }
        Ok(body)
    }

    /// Downloads a blob into `dir/<hex>.partial`, resuming what is there.
    fn blob(
        &mut self,
        d: &Descriptor,
        dir: &Path,
        retries: u32,
        progress: &mut dyn FnMut(&Progress),
    ) -> Result<PathBuf, PullError> {
        let path = dir.join(format!("{}.partial", d.digest.hex()));
        let url = format!("blobs/{}", d.digest);
        let mut attempt = 0;
        loop {
            let have = fs::metadata(&path).map_or(0, |m| m.len());
            if have == d.size {
                return Ok(path);
            }
            let from = if have > d.size { 0 } else { have };
            let r = self.get(&url, &[], from).and_then(|resp| {
                // 206: the rest; 200: the server ignored the range, start over.
                let partial = resp.status().as_u16() == 206;
                let start = if partial { from } else { 0 };
                let mut f = OpenOptions::new()
                    .create(true)
                    .write(true)
                    .append(partial)
                    .truncate(!partial)
                    .open(&path)
                    .map_err(io_at("cannot write", &path))?;
                let mut body = resp.into_body().into_reader().take(d.size - start + 1);
                let mut buf = vec![0u8; 256 * 1024];
                let mut done = start;
                let mut last = 0;
                loop {
                    let n = body.read(&mut buf).map_err(|e| Self::transport(&url, e))?;
                    if n == 0 {
                        break;
                    }
                    f.write_all(&buf[..n])
                        .map_err(io_at("cannot write", &path))?;
                    done += n as u64;
                    if done - last >= 1 << 20 || done >= d.size {
                        last = done;
                        progress(&Progress {
                            digest: d.digest.clone(),
                            done,
                            total: d.size,
                            resumed_from: start,
                        });
                    }
                }
                f.sync_all().map_err(io_at("cannot write", &path))?;
                Ok(done)
            });
            match r {
                Ok(done) if done == d.size => return Ok(path),
                Ok(done) if done > d.size => {
                    let _ = fs::remove_file(&path);
                    return Err(ContentError::SizeMismatch {
                        digest: d.digest.clone(),
                        expected: d.size,
                        actual: done,
                    }
                    .into());
                }
                // Short: the connection ended early; resume.
                Ok(_) | Err(PullError::Transport { .. }) if attempt < retries => attempt += 1,
                Ok(done) => {
                    return Err(PullError::Transport {
                        url,
                        message: format!("the transfer stopped at {done} of {} bytes", d.size),
                    })
                }
                Err(e) => return Err(e),
            }
        }
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_encoding_and_hosts() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#,
        );
        assert_eq!(s, "bearer");
        assert_eq!(p[0], ("realm".into(), "https://auth.example/token".into()));
        assert_eq!(p[1], ("service".into(), "registry.example".into()));
        assert_eq!(p[2], ("scope".into(), "repository:a/b:pull,push".into()));
        let (s, p) = parse_challenge(r#"Basic realm="x""#);
        assert_eq!((s.as_str(), p.len()), ("basic", 1));
        assert_eq!(basic_auth("user", "pass"), "Basic dXNlcjpwYXNz");
        assert_eq!(basic_auth("a", ""), "Basic YTo=");
        assert_eq!(basic_auth("ü", "p:w"), "Basic w7w6cDp3");
        assert_eq!(encode("repository:a/b:pull"), "repository%3Aa%2Fb%3Apull");
        assert_eq!(encode("a-b_c.d~é "), "a-b_c.d~%C3%A9%20");
        assert!(
            is_loopback("127.0.0.1:5000") && is_loopback("localhost") && is_loopback("[::1]:5000")
        );
        assert!(!is_loopback("registry.example:5000") && !is_loopback("10.0.0.1"));
    }
}
