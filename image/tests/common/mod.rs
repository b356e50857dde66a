//! Test images built here, from the host's static busybox: layer tars with
//! every kind of entry (including hostile ones), OCI layouts and docker-save
//! archives. No network.
#![allow(dead_code)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use berth_image::oci::{self, Descriptor, Index, Manifest};
use berth_image::{Digest, ImageStore};
use serde_json::json;

pub const BUSYBOX: &str = "/bin/busybox";

/// Skips (with the reason printed) unless root: unpacking chowns and mknods.
pub fn root_or_skip(test: &str) -> bool {
    if nix::unistd::geteuid().is_root() {
        return true;
    }
    println!("SKIP {test}: needs root (chown, mknod, trusted.* xattrs)");
    false
}

/// A fresh directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        let d = std::env::temp_dir().join(format!("berth-image-it-{}-{name}", std::process::id()));
        if d.exists() {
            let _ = std::process::Command::new("umount")
                .arg("-R")
                .arg(&d)
                .status();
            let _ = fs::remove_dir_all(&d);
        }
        fs::create_dir_all(&d).unwrap();
        TempDir(d)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
    pub fn join(&self, p: &str) -> PathBuf {
        self.0.join(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Builds a layer tar entry by entry; names are written raw, so hostile
/// names (`../x`, `/abs`) go in as they are.
pub struct Layer {
    b: tar::Builder<Vec<u8>>,
}

impl Default for Layer {
    fn default() -> Self {
        Layer::new()
    }
}

impl Layer {
    pub fn new() -> Layer {
        Layer {
            b: tar::Builder::new(Vec::new()),
        }
    }

    fn header(kind: tar::EntryType, name: &str, mode: u32, size: u64) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        let raw = &mut h.as_gnu_mut().unwrap().name;
        raw[..name.len()].copy_from_slice(name.as_bytes());
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_700_000_000);
        h
    }

    fn push(&mut self, mut h: tar::Header, data: &[u8]) -> &mut Self {
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8], mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Regular, name, mode, data.len() as u64);
        self.push(h, data)
    }

    pub fn file_owned(
        &mut self,
        name: &str,
        data: &[u8],
        mode: u32,
        uid: u64,
        gid: u64,
    ) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Regular, name, mode, data.len() as u64);
        h.set_uid(uid);
        h.set_gid(gid);
        self.push(h, data)
    }

    /// A file with PAX xattrs.
    pub fn file_xattr(&mut self, name: &str, data: &[u8], xattrs: &[(&str, &[u8])]) -> &mut Self {
        let ext: Vec<(String, &[u8])> = xattrs
            .iter()
            .map(|(k, v)| (format!("SCHILY.xattr.{k}"), *v))
            .collect();
        self.b
            .append_pax_extensions(ext.iter().map(|(k, v)| (k.as_str(), *v)))
            .unwrap();
        self.file(name, data, 0o644)
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Self {
        let h = Self::header(tar::EntryType::Directory, name, mode, 0);
        self.push(h, &[])
    }

    fn link(&mut self, kind: tar::EntryType, name: &str, target: &str) -> &mut Self {
        let mut h = Self::header(kind, name, 0o777, 0);
        let raw = &mut h.as_gnu_mut().unwrap().linkname;
        raw[..target.len()].copy_from_slice(target.as_bytes());
        self.push(h, &[])
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Symlink, name, target)
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Self {
        self.link(tar::EntryType::Link, name, target)
    }

    pub fn char_dev(&mut self, name: &str, major: u32, minor: u32) -> &mut Self {
        let mut h = Self::header(tar::EntryType::Char, name, 0o666, 0);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.push(h, &[])
    }

    pub fn fifo(&mut self, name: &str) -> &mut Self {
        let h = Self::header(tar::EntryType::Fifo, name, 0o644, 0);
        self.push(h, &[])
    }

    pub fn finish(&mut self) -> Vec<u8> {
        let b = std::mem::replace(&mut self.b, tar::Builder::new(Vec::new()));
        b.into_inner().unwrap()
    }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The busybox image's two layers: the base, and one that deletes, hides
/// and adds.
pub fn busybox_layers() -> (Vec<u8>, Vec<u8>) {
    let bb = fs::read(BUSYBOX).expect("the host's /bin/busybox (busybox-static)");
    let base = Layer::new()
        .dir("bin/", 0o755)
        .file("bin/busybox", &bb, 0o755)
        .hardlink("bin/sh", "bin/busybox")
        .symlink("bin/ls", "/bin/busybox")
        .symlink("bin/true", "busybox")
        .dir("etc/", 0o755)
        .file(
            "etc/passwd",
            b"root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/home/app:/bin/sh\n",
            0o644,
        )
        .file(
            "etc/group",
            b"root:x:0:\napp:x:1000:\nwheel:x:10:app\n",
            0o644,
        )
        .dir("data/", 0o755)
        .file("data/a", b"a", 0o644)
        .file("data/b", b"b", 0o644)
        .file("gone", b"to be deleted", 0o644)
        .file_owned("home/app/.profile", b"# app\n", 0o600, 1000, 1000)
        .file_xattr("xattr-file", b"x", &[("user.berth", b"yes")])
        .char_dev("dev/null", 1, 3)
        .fifo("run/fifo")
        .dir("tmp/", 0o1777)
        .finish();
    let top = Layer::new()
        .file(".wh.gone", b"", 0o644)
        .dir("data/", 0o755)
        .file("data/.wh..wh..opq", b"", 0o644)
        .file("data/c", b"c", 0o644)
        .hardlink("bin/cat", "bin/busybox")
        .file("usr/bin/su-like", b"#!/bin/sh\n", 0o4755)
        .file(".wh..wh.plnk", b"", 0o644)
        .finish();
    (base, top)
}

/// A small base layer (for tests that need a lower layer, not busybox).
pub fn small_base() -> Vec<u8> {
    Layer::new()
        .dir("etc/", 0o755)
        .file("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n", 0o644)
        .file("etc/hostname", b"base\n", 0o644)
        .finish()
}

/// One layer as it goes into an image: the blob, its media type, its diff id.
pub struct BlobLayer {
    pub blob: Vec<u8>,
    pub media_type: String,
    pub diff_id: Digest,
}

impl BlobLayer {
    pub fn plain(tar: Vec<u8>) -> BlobLayer {
        BlobLayer {
            diff_id: Digest::of(&tar),
            blob: tar,
            media_type: oci::OCI_LAYER.into(),
        }
    }
    pub fn gzip(tar: Vec<u8>) -> BlobLayer {
        BlobLayer {
            diff_id: Digest::of(&tar),
            blob: gzip(&tar),
            media_type: oci::OCI_LAYER_GZIP.into(),
        }
    }
}

pub fn config_json(diff_ids: &[Digest], arch: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({
        "architecture": arch,
        "os": "linux",
        "config": {
            "Env": ["PATH=/bin:/usr/bin", "MODE=test"],
            "Entrypoint": null,
            "Cmd": ["/bin/sh", "-c", "echo hello"],
            "WorkingDir": "/data",
            "User": "app",
            "Labels": {"org.example": "berth"},
            "ExposedPorts": {"80/tcp": {}}
        },
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
        "history": [{"created_by": "berth tests"}]
    }))
    .unwrap()
}

fn put_blob(dir: &Path, data: &[u8]) -> Digest {
    let d = Digest::of(data);
    let b = dir.join("blobs/sha256");
    fs::create_dir_all(&b).unwrap();
    fs::write(b.join(d.hex()), data).unwrap();
    d
}

/// Writes a manifest (and its config and layers) into the layout at `dir`;
/// returns its descriptor.
pub fn write_manifest(
    dir: &Path,
    layers: &[BlobLayer],
    config: &[u8],
    config_type: &str,
) -> Descriptor {
    let cfg = put_blob(dir, config);
    let descs: Vec<Descriptor> = layers
        .iter()
        .map(|l| Descriptor::new(&l.media_type, put_blob(dir, &l.blob), l.blob.len() as u64))
        .collect();
    let m = Manifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.into()),
        config: Descriptor::new(config_type, cfg, config.len() as u64),
        layers: descs,
        annotations: Default::default(),
        extra: Default::default(),
    };
    let bytes = serde_json::to_vec(&m).unwrap();
    Descriptor::new(oci::OCI_MANIFEST, put_blob(dir, &bytes), bytes.len() as u64)
}

pub fn write_index(dir: &Path, manifests: Vec<Descriptor>) {
    let idx = Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests,
        annotations: Default::default(),
        extra: Default::default(),
    };
    fs::write(dir.join("index.json"), serde_json::to_vec(&idx).unwrap()).unwrap();
    fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
}

/// A complete OCI layout of one image named `name` (a bare tag or a full reference).
pub fn write_layout(dir: &Path, layers: &[BlobLayer], name: &str) -> Descriptor {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
    let mut desc = write_manifest(
        dir,
        layers,
        &config_json(&diff_ids, "amd64"),
        oci::OCI_CONFIG,
    );
    desc.annotations.insert(oci::REF_NAME.into(), name.into());
    write_index(dir, vec![desc.clone()]);
    desc
}

/// The busybox test image as an OCI layout: plain base, gzipped top.
pub fn busybox_layout(dir: &Path, name: &str) -> Descriptor {
    let (base, top) = busybox_layers();
    write_layout(dir, &[BlobLayer::plain(base), BlobLayer::gzip(top)], name)
}

/// A `docker save` archive: manifest.json, `<id>.json`, `<n>/layer.tar`.
pub fn docker_archive(layers: &[Vec<u8>], tags: &[&str]) -> Vec<u8> {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(l)).collect();
    let config = config_json(&diff_ids, "amd64");
    let cfg_name = format!("{}.json", Digest::of(&config).hex());
    let mut b = tar::Builder::new(Vec::new());
    let mut add = |name: &str, data: &[u8]| {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        b.append_data(&mut h, name, data).unwrap();
    };
    let mut layer_names = Vec::new();
    for (i, l) in layers.iter().enumerate() {
        let n = format!("{:064x}/layer.tar", i + 1);
        add(&n, l);
        layer_names.push(n);
    }
    add(&cfg_name, &config);
    let manifest = json!([{ "Config": cfg_name, "RepoTags": tags, "Layers": layer_names }]);
    add("manifest.json", &serde_json::to_vec(&manifest).unwrap());
    b.into_inner().unwrap()
}

/// Asserts the store holds nothing: no image, blob, snapshot, reference,
/// rootfs or temp file.
pub fn assert_empty(store: &ImageStore) {
    assert_eq!(store.list().unwrap(), vec![], "images");
    assert_eq!(store.content().list().unwrap(), vec![], "blobs");
    assert_eq!(
        store.meta().snapshots().unwrap(),
        vec![],
        "snapshot records"
    );
    assert!(store.meta().refcounts().unwrap().is_empty(), "refcounts");
    let root = store.root();
    let mut snaps: Vec<String> = fs::read_dir(root.join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    snaps.sort();
    assert_eq!(snaps, ["tmp"], "snapshot dirs");
    assert_eq!(
        fs::read_dir(root.join("snapshots/tmp")).unwrap().count(),
        0,
        "unpack temp dirs"
    );
    assert_eq!(
        fs::read_dir(root.join("ingest")).unwrap().count(),
        0,
        "ingest files"
    );
}
