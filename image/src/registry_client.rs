//! One registry endpoint, spoken to over HTTP: the registry v2 GETs a pull
//! needs (manifest, small blob, resumable blob download) and the auth
//! dance from the registry's `WWW-Authenticate` challenge (bearer token or
//! basic). pull.rs decides what to fetch; this decides how.
//!
//! A small client over ureq (blocking, rustls) rather than oci-client, which
//! is async over reqwest/tokio: this crate is blocking (berthd calls it from
//! spawn_blocking) and needs a handful of GETs.

use std::fs::{self, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use percent_encoding::{utf8_percent_encode, AsciiSet, NON_ALPHANUMERIC};

use crate::content::ContentError;
use crate::digest::Digest;
use crate::import::{ImportError, MAX_JSON};
use crate::oci::{self, Descriptor};
use crate::pull::{io_at, Progress, PullError, PullOptions};
use crate::reference::DEFAULT_REGISTRY;
use crate::registries::Endpoint;

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

pub(crate) struct Client {
    agent: ureq::Agent,
    base: String,
    registry: String,
    repo: String,
    creds: Option<(String, String)>,
    auth: Option<String>,
}

type Response = ureq::http::Response<ureq::Body>;

impl Client {
    pub(crate) fn new(e: &Endpoint, opts: &PullOptions) -> Client {
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

    /// The whole body of `resp` (from `url`), at most `limit` bytes.
    fn read_body(resp: &mut Response, url: &str, limit: u64) -> Result<Vec<u8>, PullError> {
        resp.body_mut()
            .with_config()
            .limit(limit)
            .read_to_vec()
            .map_err(|e| Self::transport(url, e))
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
                let body = Self::read_body(&mut resp, &url, 1 << 20)?;
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
    pub(crate) fn manifest(
        &mut self,
        reference: &str,
        expected: Option<&Digest>,
    ) -> Result<(Vec<u8>, String, Digest), PullError> {
        let url = format!("manifests/{reference}");
        let mut resp = self.get(&url, MANIFEST_TYPES, 0)?;
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned());
        let body = Self::read_body(&mut resp, &url, MAX_JSON)?;
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
    pub(crate) fn small_blob(&mut self, d: &Descriptor) -> Result<Vec<u8>, PullError> {
        if d.size > MAX_JSON {
            return Err(ImportError::TooLarge {
                what: format!("blob {}", d.digest),
            }
            .into());
        }
        let url = format!("blobs/{}", d.digest);
        let mut resp = self.get(&url, &[], 0)?;
        let body = Self::read_body(&mut resp, &url, MAX_JSON)?;
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
    pub(crate) fn blob(
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
