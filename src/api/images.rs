//! io.berth.Berth1.Images at /io/berth/Berth1 (beside the Manager): the
//! image store — import, pull, list, inspect, tag, remove, prune, save.
//! Containers are made from an image with CreateContainer's `image` option.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use zbus::object_server::SignalEmitter;
use zbus::zvariant::OwnedValue;
use zbus::{interface, Connection};

use crate::api::error::{Error, Result};
use crate::api::require_root;
use crate::daemon::Daemon;
use crate::images::{check_name, image_error, with_store};
use crate::options::get;

pub struct Images {
    pub daemon: Arc<Daemon>,
}

fn string_option(options: &HashMap<String, OwnedValue>, key: &str) -> Result<Option<String>> {
    Ok(options.get(key).map(|v| get(key, v, "s")).transpose()?)
}

fn check_keys(options: &HashMap<String, OwnedValue>, known: &[&str]) -> Result<()> {
    match options.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(Error::InvalidArgument(format!(
            "unknown option {k:?} (known: {})",
            known.join(", ")
        ))),
        None => Ok(()),
    }
}

/// PullImage's (and GetRemoteDigest's) options, with berthd's mirrors.
fn pull_options(
    daemon: &Daemon,
    options: &HashMap<String, OwnedValue>,
) -> Result<berth_image::PullOptions> {
    check_keys(options, &["username", "password", "plain_http"])?;
    let mut opts = berth_image::PullOptions {
        registries: daemon.registries.get().cloned().unwrap_or_default(),
        ..Default::default()
    };
    if let (Some(u), Some(p)) = (
        string_option(options, "username")?,
        string_option(options, "password")?,
    ) {
        opts.credentials = Some((u, p));
    }
    if let Some(v) = options.get("plain_http") {
        opts.plain_http = Some(get("plain_http", v, "b")?);
    }
    Ok(opts)
}

fn absolute(path: &str) -> Result<PathBuf> {
    let p = PathBuf::from(path);
    if !p.is_absolute() || path.len() > libc::PATH_MAX as usize {
        return Err(Error::InvalidArgument(format!(
            "{:?} must be an absolute path",
            crate::daemon::brief(path)
        )));
    }
    Ok(p)
}

#[interface(name = "io.berth.Berth1.Images")]
impl Images {
    /// Imports an OCI image layout directory or a docker/podman save tar
    /// (optionally gzipped) at `path`; option `name` (s) names a single
    /// image. Returns the names recorded.
    async fn import_image(
        &self,
        path: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<Vec<String>> {
        require_root(conn, &hdr).await?;
        check_keys(&options, &["name"])?;
        let opts = berth_image::ImportOptions {
            name: string_option(&options, "name")?,
            ..Default::default()
        };
        let path = absolute(path)?;
        if let Err(e) = std::fs::symlink_metadata(&path) {
            return Err(Error::InvalidArgument(format!(
                "{}: {e}",
                crate::daemon::brief(&path.to_string_lossy())
            )));
        }
        with_store(&self.daemon.images, move |s| {
            let recs = s.import(&path, &opts).map_err(image_error)?;
            Ok(recs.into_iter().map(|r| r.name).collect())
        })
        .await
    }

    /// Pulls `reference` from its registry (linux/amd64 of an index);
    /// options `username`/`password` (s), `plain_http` (b). Returns the name.
    async fn pull_image(
        &self,
        reference: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
        #[zbus(signal_emitter)] em: SignalEmitter<'_>,
    ) -> Result<String> {
        require_root(conn, &hdr).await?;
        let opts = pull_options(&self.daemon, &options)?;
        // Progress goes out as PullProgress signals from here: the pull runs
        // on the blocking pool, the signals need the async side. At most one
        // signal per blob per 100 ms, and the last one always.
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<berth_image::Progress>();
        let emitter = em.to_owned();
        let shown = reference.to_string();
        let relay = tokio::spawn(async move {
            let mut last: HashMap<String, std::time::Instant> = HashMap::new();
            while let Some(p) = rx.recv().await {
                let key = p.digest.to_string();
                let now = std::time::Instant::now();
                let due = last
                    .get(&key)
                    .is_none_or(|t| now.duration_since(*t).as_millis() >= 100);
                if due || p.done >= p.total {
                    last.insert(key.clone(), now);
                    let _ = Self::pull_progress(&emitter, &shown, &key, p.done, p.total).await;
                }
            }
        });
        let reference = reference.to_string();
        let pulled: Result<String> = with_store(&self.daemon.images, move |s| {
            let rec = s
                .pull(&reference, &opts, &mut |p| {
                    let _ = tx.send(p.clone());
                })
                .map_err(image_error)?;
            Ok(rec.name)
        })
        .await;
        let _ = relay.await;
        pulled
    }

    /// The manifest digest a PullImage of `reference` would get now (for
    /// this host's platform), from the registry, downloading nothing;
    /// PullImage's options. `berthctl auto-update --dry-run` compares it
    /// with the local image's `Manifest`.
    async fn get_remote_digest(
        &self,
        reference: &str,
        options: HashMap<String, OwnedValue>,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<String> {
        require_root(conn, &hdr).await?;
        check_name(reference)?;
        let opts = pull_options(&self.daemon, &options)?;
        let reference = reference.to_string();
        tokio::task::spawn_blocking(move || berth_image::pull::remote_digest(&reference, &opts))
            .await
            .map_err(|e| Error::Internal(e.to_string()))?
            .map(|d| d.to_string())
            .map_err(|e| image_error(e).into())
    }

    /// Bytes of a blob of a pull in progress (`berthctl image pull` shows them).
    #[zbus(signal)]
    async fn pull_progress(
        em: &SignalEmitter<'_>,
        reference: &str,
        digest: &str,
        done: u64,
        total: u64,
    ) -> zbus::Result<()>;

    /// (name, image id, manifest digest, layers' compressed size, imported
    /// at µs) of every image.
    async fn list_images(&self) -> Result<Vec<(String, String, String, u64, u64)>> {
        with_store(&self.daemon.images, |s| {
            let recs = s.list().map_err(image_error)?;
            Ok(recs
                .into_iter()
                .map(|r| {
                    let size = r.layers.iter().map(|l| l.size).sum();
                    (
                        r.name,
                        r.config.to_string(),
                        r.manifest.to_string(),
                        size,
                        r.imported_at,
                    )
                })
                .collect())
        })
        .await
    }

    /// The image's record and config as JSON.
    async fn inspect_image(&self, name: &str) -> Result<String> {
        check_name(name)?;
        let name = name.to_string();
        with_store(&self.daemon.images, move |s| {
            let i = s.inspect(&name).map_err(image_error)?;
            let layers: Vec<String> = i
                .record
                .layers
                .iter()
                .map(|l| l.digest.to_string())
                .collect();
            Ok(serde_json::json!({
                "Name": i.record.name,
                "Names": i.names,
                "Id": i.record.config.to_string(),
                "Manifest": i.record.manifest.to_string(),
                "Platform": format!("{}/{}", i.record.platform.os, i.record.platform.architecture),
                "Layers": layers,
                "ImportedAt": i.record.imported_at,
                "Config": i.config_json,
            })
            .to_string())
        })
        .await
    }

    async fn tag_image(
        &self,
        name: &str,
        new_name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<String> {
        require_root(conn, &hdr).await?;
        check_name(name)?;
        if new_name.is_empty() || new_name.len() > crate::images::MAX_NAME {
            return Err(Error::InvalidArgument(format!(
                "new name {:?}: 1-{} bytes",
                crate::daemon::brief(new_name),
                crate::images::MAX_NAME
            )));
        }
        let (name, new_name) = (name.to_string(), new_name.to_string());
        with_store(&self.daemon.images, move |s| {
            Ok(s.tag(&name, &new_name).map_err(image_error)?.name)
        })
        .await
    }

    /// Removes a name; the blobs go at the next PruneImages if nothing else
    /// (another name, a container's rootfs) holds them.
    async fn remove_image(
        &self,
        name: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        require_root(conn, &hdr).await?;
        check_name(name)?;
        let name = name.to_string();
        with_store(&self.daemon.images, move |s| {
            s.remove(&name).map_err(image_error).map(drop)
        })
        .await
    }

    /// Garbage collection: (blobs removed, bytes freed, snapshots removed).
    async fn prune_images(
        &self,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<(u32, u64, u32)> {
        require_root(conn, &hdr).await?;
        with_store(&self.daemon.images, |s| {
            let r = s.gc().map_err(image_error)?;
            Ok((r.blobs.len() as u32, r.bytes, r.snapshots.len() as u32))
        })
        .await
    }

    /// Writes the named images as an OCI layout into the empty or new
    /// directory `path`.
    async fn save_images(
        &self,
        names: Vec<String>,
        path: &str,
        #[zbus(connection)] conn: &Connection,
        #[zbus(header)] hdr: zbus::message::Header<'_>,
    ) -> Result<()> {
        require_root(conn, &hdr).await?;
        if names.is_empty() {
            return Err(Error::InvalidArgument(
                "name at least one image to save".into(),
            ));
        }
        names.iter().try_for_each(|n| check_name(n))?;
        let path = absolute(path)?;
        with_store(&self.daemon.images, move |s| {
            let refs: Vec<&str> = names.iter().map(String::as_str).collect();
            s.save(&refs, &path).map_err(image_error)
        })
        .await
    }
}
