//! ImageService over berthd's image store (io.berth.Berth1.Images).

use std::collections::HashMap;

use berth_client::ImagesProxy;
use zbus::zvariant::Value;

use crate::api::*;
use crate::error::{CriError, Result};
use crate::state::Cri;

fn name_of(spec: Option<&ImageSpec>) -> Result<String> {
    match spec.map(|s| s.image.as_str()) {
        Some(n) if !n.is_empty() => Ok(n.to_string()),
        _ => Err(CriError::InvalidArgument("image.image is required".into())),
    }
}

/// berthd's InspectImage as the CRI's Image.
fn image_of(json: &str) -> Image {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let cfg = crate::spec::ImageConfig::from_inspect(json);
    let names: Vec<String> = v["Names"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str().map(String::from))
                .collect()
        })
        .unwrap_or_default();
    let manifest = v["Manifest"].as_str().unwrap_or_default();
    let digests = names
        .iter()
        .map(|n| format!("{}@{manifest}", repository(n)))
        .filter(|_| !manifest.is_empty())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    // The image's user: a uid gives `uid`, a name gives `username`.
    let user = cfg.user.split(':').next().unwrap_or_default().to_string();
    let (uid, username) = match user.parse::<i64>() {
        Ok(n) => (Some(Int64Value { value: n }), String::new()),
        Err(_) => (None, user),
    };
    Image {
        id: cfg.id.clone(),
        repo_tags: names,
        repo_digests: digests,
        size: v["Size"].as_u64().unwrap_or(0),
        uid,
        username,
        spec: Some(ImageSpec {
            image: cfg.id.clone(),
            ..Default::default()
        }),
        pinned: false,
    }
}

pub async fn list(cri: &Cri, filter: Option<ImageFilter>) -> Result<Vec<Image>> {
    let im = cri.images().await?;
    let want = filter
        .and_then(|f| f.image)
        .map(|i| i.image)
        .unwrap_or_default();
    let mut out: Vec<Image> = Vec::new();
    for (name, id, _digest, size, _at) in im.list_images().await? {
        if let Some(i) = out.iter_mut().find(|i| i.id == id) {
            // Inspect already gave every name of the image.
            if !i.repo_tags.contains(&name) {
                i.repo_tags.push(name);
            }
            continue;
        }
        let Ok(json) = im.inspect_image(&name).await else {
            continue;
        };
        let mut i = image_of(&json);
        i.size = size;
        out.push(i);
    }
    if !want.is_empty() {
        out.retain(|i| {
            i.id == want
                || i.repo_tags
                    .iter()
                    .any(|t| t == &want || t.ends_with(&format!("/{want}")))
        });
    }
    Ok(out)
}

/// A name's repository: without `@digest`, without a `:tag` after the last `/`.
fn repository(name: &str) -> &str {
    let name = name.split_once('@').map_or(name, |(r, _)| r);
    match name.rfind(':') {
        Some(i) if !name[i..].contains('/') => &name[..i],
        _ => name,
    }
}

/// `repo@sha256:…` as repo_digests names an image (a repository it was
/// pulled under, its manifest digest) → a name of it berthd knows.
async fn resolve(im: &ImagesProxy<'_>, name: String) -> Result<String> {
    let Some((repo, digest)) = name.split_once('@') else {
        return Ok(name);
    };
    let found = im
        .list_images()
        .await?
        .into_iter()
        .find(|(n, _, d, _, _)| d == digest && repository(n) == repo);
    Ok(found.map_or(name, |row| row.0))
}

pub async fn status(cri: &Cri, req: ImageStatusRequest) -> Result<ImageStatusResponse> {
    let im = cri.images().await?;
    let name = resolve(&im, name_of(req.image.as_ref())?).await?;
    match im.inspect_image(&name).await {
        Ok(json) => {
            let mut i = image_of(&json);
            if let Some(row) = im.list_images().await?.into_iter().find(|r| r.1 == i.id) {
                i.size = row.3;
            }
            let mut info = HashMap::new();
            if req.verbose {
                info.insert("info".to_string(), json);
            }
            Ok(ImageStatusResponse {
                image: Some(i),
                info,
            })
        }
        // Not there: an empty answer, not an error (the CRI's rule).
        Err(zbus::Error::MethodError(n, _, _)) if n.as_str().ends_with("NotFound") => {
            Ok(ImageStatusResponse::default())
        }
        Err(e) => Err(e.into()),
    }
}

pub async fn pull(cri: &Cri, req: PullImageRequest) -> Result<String> {
    let name = name_of(req.image.as_ref())?;
    let mut o: HashMap<&str, Value> = HashMap::new();
    if let Some(a) = &req.auth {
        let (mut user, mut pass) = (a.username.clone(), a.password.clone());
        if user.is_empty() && !a.auth.is_empty() {
            // `auth` is base64("user:password"), as in docker's config.json.
            if let Some((u, p)) = decode_auth(&a.auth) {
                (user, pass) = (u, p);
            }
        }
        if !user.is_empty() {
            o.insert("username", Value::from(user));
            o.insert("password", Value::from(pass));
        }
    }
    let im = cri.images().await?;
    let pulled = im.pull_image(&name, o).await?;
    let json = im.inspect_image(&pulled).await?;
    Ok(crate::spec::ImageConfig::from_inspect(&json).id)
}

fn decode_auth(b64: &str) -> Option<(String, String)> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut bits = 0u32;
    let mut n = 0;
    let mut out = Vec::new();
    for c in b64.bytes().filter(|c| *c != b'=') {
        let v = A.iter().position(|x| *x == c)? as u32;
        bits = (bits << 6) | v;
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
            bits &= (1 << n) - 1;
        }
    }
    let s = String::from_utf8(out).ok()?;
    let (u, p) = s.split_once(':')?;
    Some((u.into(), p.into()))
}

pub async fn remove(cri: &Cri, req: RemoveImageRequest) -> Result<()> {
    let im = cri.images().await?;
    let name = resolve(&im, name_of(req.image.as_ref())?).await?;
    // By id: every name of it goes (the CRI removes the image, not a tag).
    let names: Vec<String> = match im.inspect_image(&name).await {
        Ok(json) => image_of(&json).repo_tags,
        Err(zbus::Error::MethodError(n, _, _)) if n.as_str().ends_with("NotFound") => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for n in names {
        match im.remove_image(&n).await {
            Ok(()) => {}
            Err(zbus::Error::MethodError(e, _, _)) if e.as_str().ends_with("NotFound") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

pub fn fs_info(root: &std::path::Path) -> ImageFsInfoResponse {
    let (used, inodes) = usage(root);
    let now = crate::store::now_ns();
    let fs = FilesystemUsage {
        timestamp: now,
        fs_id: Some(FilesystemIdentifier {
            mountpoint: root.display().to_string(),
        }),
        used_bytes: Some(UInt64Value { value: used }),
        inodes_used: Some(UInt64Value { value: inodes }),
    };
    ImageFsInfoResponse {
        image_filesystems: vec![fs.clone()],
        container_filesystems: vec![fs],
    }
}

/// Bytes and inodes under `dir` (no symlink followed, one filesystem).
fn usage(dir: &std::path::Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let (mut bytes, mut inodes) = (0u64, 0u64);
    let dev = std::fs::symlink_metadata(dir).map(|m| m.dev()).unwrap_or(0);
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            if m.dev() != dev {
                continue;
            }
            inodes += 1;
            bytes += m.blocks() * 512;
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    (bytes, inodes)
}

#[cfg(test)]
mod tests {
    use super::repository;

    #[test]
    fn repositories_of_names() {
        assert_eq!(repository("gcr.io/a/b:1"), "gcr.io/a/b");
        assert_eq!(repository("localhost:5000/a:v1"), "localhost:5000/a");
        assert_eq!(repository("localhost:5000/a"), "localhost:5000/a");
        assert_eq!(
            repository("gcr.io/a/b@sha256:0123"),
            "gcr.io/a/b",
            "a digest's colon is not a tag's"
        );
        assert_eq!(repository("gcr.io/a/b:t@sha256:0123"), "gcr.io/a/b");
    }
}
