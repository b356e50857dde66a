//! Bad images: each import fails with a named error and leaves nothing in
//! the store (no record, blob, snapshot, reference or temp file), and nothing
//! is ever written outside it.

mod common;

use std::fs;
use std::path::Path;

use berth_image::content::ContentError;
use berth_image::import::ImportError;
use berth_image::oci;
use berth_image::snapshot::SnapshotError;
use berth_image::unpack::UnpackError;
use berth_image::{Digest, Error, ImageStore, ImportOptions};
use common::*;

/// Imports `path` into a fresh store, expecting failure; checks the store is
/// empty afterwards and returns the error.
fn import_fails(t: &TempDir, path: &Path) -> Error {
    let store = ImageStore::open(&t.join("store")).unwrap();
    let err = store
        .import(path, &ImportOptions::default())
        .expect_err("import of a bad image succeeded");
    assert_empty(&store);
    err
}

fn unpack_error(e: &Error) -> &UnpackError {
    match e {
        Error::Snapshot(SnapshotError::Unpack { source, .. }) => source,
        Error::Import(ImportError::Archive(source)) => source,
        other => panic!("not an unpack error: {other}"),
    }
}

/// A layout with a good base layer and `bad` on top (so the base gets
/// unpacked first and must be undone).
fn layout_with(t: &TempDir, bad: Vec<u8>) -> std::path::PathBuf {
    let base = small_base();
    let dir = t.join("layout");
    write_layout(
        &dir,
        &[BlobLayer::plain(base), BlobLayer::gzip(bad)],
        "bad:1",
    );
    dir
}

#[test]
fn corrupted_blob_is_a_digest_mismatch() {
    if !root_or_skip("corrupted_blob_is_a_digest_mismatch") {
        return;
    }
    let t = TempDir::new("corrupt");
    let layout = t.join("layout");
    let (base, top) = busybox_layers();
    let bad = BlobLayer::plain(top);
    write_layout(
        &layout,
        &[BlobLayer::plain(base), BlobLayer::plain(bad.blob.clone())],
        "c:1",
    );
    // Flip one byte of the second layer's blob, keeping its size.
    let p = layout
        .join("blobs/sha256")
        .join(Digest::of(&bad.blob).hex());
    let mut data = fs::read(&p).unwrap();
    data[700] ^= 0xff;
    fs::write(&p, data).unwrap();
    let err = import_fails(&t, &layout);
    assert!(
        matches!(
            err,
            Error::Import(ImportError::Content(ContentError::DigestMismatch { .. }))
        ),
        "{err}"
    );
    assert_eq!(err.kind(), berth_image::ErrorKind::InvalidArgument);
}

#[test]
fn truncated_layer_tar_is_refused() {
    if !root_or_skip("truncated_layer_tar_is_refused") {
        return;
    }
    let t = TempDir::new("truncated");
    let big = vec![7u8; 64 * 1024];
    let mut tar = Layer::new()
        .file("big", &big, 0o644)
        .file("after", b"x", 0o644)
        .finish();
    tar.truncate(512 + 10_000); // mid-file
                                // The blob is consistent with its digest: the tar itself is broken.
    let dir = t.join("layout");
    write_layout(&dir, &[BlobLayer::plain(tar.clone())], "trunc:1");
    let err = import_fails(&t, &dir);
    assert!(
        matches!(unpack_error(&err), UnpackError::Truncated(_)),
        "{err}"
    );
    // The same, gzipped and cut: the gzip stream is truncated.
    let t2 = TempDir::new("truncated-gz");
    let full = Layer::new().file("big", &big, 0o644).finish();
    let mut gz = gzip(&full);
    gz.truncate(gz.len() / 2);
    let dir = t2.join("layout");
    let layer = BlobLayer {
        blob: gz,
        media_type: oci::OCI_LAYER_GZIP.into(),
        diff_id: Digest::of(&full),
    };
    write_layout(&dir, &[layer], "trunc:2");
    let err = import_fails(&t2, &dir);
    assert!(
        matches!(unpack_error(&err), UnpackError::Truncated(_)),
        "{err}"
    );
}

#[test]
fn truncated_docker_archive_is_refused() {
    if !root_or_skip("truncated_docker_archive_is_refused") {
        return;
    }
    let t = TempDir::new("truncated-archive");
    let (base, top) = busybox_layers();
    let mut tar = docker_archive(&[base, top], &["x:1"]);
    tar.truncate(tar.len() / 3);
    fs::write(t.join("a.tar"), &tar).unwrap();
    let err = import_fails(&t, &t.join("a.tar"));
    assert!(
        matches!(unpack_error(&err), UnpackError::Truncated(_)),
        "{err}"
    );
}

#[test]
fn dotdot_and_absolute_entries_are_refused() {
    if !root_or_skip("dotdot_and_absolute_entries_are_refused") {
        return;
    }
    let victim = std::env::temp_dir().join(format!("berth-image-victim-{}", std::process::id()));
    let _ = fs::remove_file(&victim);
    let name = victim.file_name().unwrap().to_str().unwrap().to_owned();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot",
            Layer::new()
                .file(
                    &format!("../../../../../../../../tmp/{name}"),
                    b"pwned",
                    0o644,
                )
                .finish(),
        ),
        (
            "dotdot-inner",
            Layer::new()
                .dir("a/", 0o755)
                .file("a/../../x", b"pwned", 0o644)
                .finish(),
        ),
        (
            "absolute",
            Layer::new()
                .file(victim.to_str().unwrap(), b"pwned", 0o644)
                .finish(),
        ),
        (
            "hardlink-dotdot",
            Layer::new()
                .hardlink("h", "../../../../etc/passwd")
                .finish(),
        ),
    ];
    for (what, bad) in cases {
        let t = TempDir::new(&format!("trav-{what}"));
        let err = import_fails(&t, &layout_with(&t, bad));
        let u = unpack_error(&err);
        let ok = match what {
            "absolute" => matches!(u, UnpackError::AbsolutePath { .. }),
            _ => matches!(u, UnpackError::PathTraversal { .. }),
        };
        assert!(ok, "{what}: {err}");
        assert!(!victim.exists(), "{what} wrote outside the store");
    }
}

#[test]
fn symlink_escapes_are_refused() {
    if !root_or_skip("symlink_escapes_are_refused") {
        return;
    }
    let outside = TempDir::new("outside");
    let target = outside.path().to_str().unwrap().to_owned();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // An absolute symlink to a host dir, then a file through it.
        (
            "absolute",
            Layer::new()
                .symlink("evil", &target)
                .file("evil/pwned", b"x", 0o644)
                .finish(),
        ),
        // A relative one climbing out.
        (
            "relative",
            Layer::new()
                .symlink("evil", "../../../../../../../../../..")
                .file(&format!("evil{target}/pwned"), b"x", 0o644)
                .finish(),
        ),
        // A directory entry through a link, and a hardlink whose target path crosses one.
        (
            "dir",
            Layer::new()
                .symlink("d", &target)
                .dir("d/sub/", 0o755)
                .finish(),
        ),
        (
            "hardlink",
            Layer::new()
                .symlink("d", &target)
                .hardlink("h", "d/file")
                .finish(),
        ),
        // A whiteout through a link would delete on the host.
        (
            "whiteout",
            Layer::new()
                .symlink("d", &target)
                .file("d/.wh.file", b"", 0o644)
                .finish(),
        ),
    ];
    fs::write(outside.join("file"), b"keep").unwrap();
    for (what, bad) in cases {
        let t = TempDir::new(&format!("sym-{what}"));
        let err = import_fails(&t, &layout_with(&t, bad));
        assert!(
            matches!(unpack_error(&err), UnpackError::SymlinkInPath { .. }),
            "{what}: {err}"
        );
        let mut left: Vec<String> = fs::read_dir(outside.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["file"], "{what} wrote outside");
        assert_eq!(fs::read(outside.join("file")).unwrap(), b"keep");
    }
    // A directory replaced by a symlink later in the layer: its deferred
    // chmod/utime must not follow the link to the host.
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    fs::set_permissions(outside.path(), fs::Permissions::from_mode(0o750)).unwrap();
    let before = fs::metadata(outside.path()).unwrap();
    let oname = outside.path().file_name().unwrap().to_str().unwrap();
    let oparent = outside.path().parent().unwrap().to_str().unwrap();
    for (what, bad) in [
        (
            "dir-then-link",
            Layer::new().dir("d/", 0o777).symlink("d", &target).finish(),
        ),
        (
            "parent-then-link",
            Layer::new()
                .dir("p/", 0o755)
                .dir(&format!("p/{oname}/"), 0o777)
                .symlink("p", oparent)
                .finish(),
        ),
    ] {
        let t = TempDir::new(&format!("sym-{what}"));
        let store = ImageStore::open(&t.join("store")).unwrap();
        let r = store.import(&layout_with(&t, bad), &ImportOptions::default());
        match what {
            // The directory is simply replaced by the link.
            "dir-then-link" => assert!(r.is_ok(), "{r:?}"),
            // Its parent became a link: refused, as any path through a link.
            _ => assert!(
                matches!(&r, Err(e) if matches!(unpack_error(e), UnpackError::SymlinkInPath { .. })),
                "{r:?}"
            ),
        }
        let after = fs::metadata(outside.path()).unwrap();
        assert_eq!(after.mode(), before.mode(), "{what} chmodded the host");
        assert_eq!(after.mtime(), before.mtime(), "{what} touched the host");
    }
    // A symlink that is only stored (never written through) is fine, and a
    // later entry replacing the link itself does not follow it.
    let t = TempDir::new("sym-ok");
    let ok = Layer::new()
        .symlink("evil", &target)
        .file("evil", b"plain file now", 0o644)
        .finish();
    let store = ImageStore::open(&t.join("store")).unwrap();
    store
        .import(&layout_with(&t, ok), &ImportOptions::default())
        .unwrap();
    assert_eq!(fs::read(outside.join("file")).unwrap(), b"keep");
}

#[test]
fn unknown_media_types_are_refused() {
    if !root_or_skip("unknown_media_types_are_refused") {
        return;
    }
    let (base, _) = busybox_layers();
    // A layer of an unknown type.
    let t = TempDir::new("mt-layer");
    let mut l = BlobLayer::plain(base.clone());
    l.media_type = "application/vnd.example.layer.v1+squashfs".into();
    write_layout(&t.join("layout"), &[l], "m:1");
    let err = import_fails(&t, &t.join("layout"));
    assert!(
        matches!(&err, Error::Import(ImportError::UnknownMediaType { media_type, .. }) if media_type.contains("squashfs")),
        "{err}"
    );
    // An artifact: a config that is not an image config.
    let t = TempDir::new("mt-config");
    let l = BlobLayer::plain(base.clone());
    let cfg = config_json(std::slice::from_ref(&l.diff_id), "amd64");
    let mut d = write_manifest(
        &t.join("layout"),
        &[l],
        &cfg,
        "application/vnd.cncf.helm.config.v1+json",
    );
    d.annotations.insert(oci::REF_NAME.into(), "helm:1".into());
    write_index(&t.join("layout"), vec![d]);
    let err = import_fails(&t, &t.join("layout"));
    assert!(
        matches!(err, Error::Import(ImportError::UnknownMediaType { .. })),
        "{err}"
    );
    // A zstd layer: named as unsupported, not as corrupt.
    let t = TempDir::new("mt-zstd");
    let mut l = BlobLayer::plain(base);
    l.media_type = oci::OCI_LAYER_ZSTD.into();
    write_layout(&t.join("layout"), &[l], "z:1");
    let err = import_fails(&t, &t.join("layout"));
    assert!(
        matches!(
            unpack_error(&err),
            UnpackError::UnsupportedCompression("zstd")
        ),
        "{err}"
    );
}

#[test]
fn missing_manifests_and_files_are_named() {
    if !root_or_skip("missing_manifests_and_files_are_named") {
        return;
    }
    // index.json names a manifest blob that is not there.
    let t = TempDir::new("missing-manifest");
    let d = busybox_layout(&t.join("layout"), "mm:1");
    fs::remove_file(t.join("layout/blobs/sha256").join(d.digest.hex())).unwrap();
    let err = import_fails(&t, &t.join("layout"));
    assert!(
        matches!(&err, Error::Import(ImportError::MissingBlob(m)) if *m == d.digest),
        "{err}"
    );
    // A layer blob missing: the manifest and config read before are undone.
    let t = TempDir::new("missing-layer");
    let (base, top) = busybox_layers();
    let top = BlobLayer::gzip(top);
    write_layout(
        &t.join("layout"),
        &[
            BlobLayer::plain(base.clone()),
            BlobLayer::plain(top.blob.clone()),
        ],
        "ml:1",
    );
    fs::remove_file(
        t.join("layout/blobs/sha256")
            .join(Digest::of(&top.blob).hex()),
    )
    .unwrap();
    let err = import_fails(&t, &t.join("layout"));
    assert!(
        matches!(err, Error::Import(ImportError::MissingBlob(_))),
        "{err}"
    );
    // An empty index, no index, a tar that is no image, a docker archive
    // whose manifest.json names a missing layer.
    let t = TempDir::new("empty-index");
    write_index(t.path(), vec![]);
    let err = import_fails(&t, t.path());
    assert!(
        matches!(err, Error::Import(ImportError::MissingManifest(_))),
        "{err}"
    );
    let t = TempDir::new("no-index");
    fs::create_dir_all(t.join("dir")).unwrap();
    let err = import_fails(&t, &t.join("dir"));
    assert!(
        matches!(err, Error::Import(ImportError::NotAnImage { .. })),
        "{err}"
    );
    let t = TempDir::new("not-image");
    fs::write(
        t.join("x.tar"),
        Layer::new().file("hello", b"x", 0o644).finish(),
    )
    .unwrap();
    let err = import_fails(&t, &t.join("x.tar"));
    assert!(
        matches!(err, Error::Import(ImportError::NotAnImage { .. })),
        "{err}"
    );
    let t = TempDir::new("docker-missing");
    let full = docker_archive(&[base], &["d:1"]);
    let mut ar = tar::Archive::new(&full[..]);
    let mut b = tar::Builder::new(Vec::new());
    for e in ar.entries().unwrap() {
        let mut e = e.unwrap();
        if e.path().unwrap().ends_with("layer.tar") {
            continue;
        }
        let mut h = e.header().clone();
        let p = e.path().unwrap().into_owned();
        b.append_data(&mut h, p, &mut e).unwrap();
    }
    fs::write(t.join("d.tar"), b.into_inner().unwrap()).unwrap();
    let err = import_fails(&t, &t.join("d.tar"));
    assert!(
        matches!(&err, Error::Import(ImportError::MissingFile(f)) if f.ends_with("layer.tar")),
        "{err}"
    );
}

#[test]
fn diff_id_mismatch_and_layer_count_are_refused() {
    if !root_or_skip("diff_id_mismatch_and_layer_count_are_refused") {
        return;
    }
    let t = TempDir::new("diffid");
    let (base, top) = busybox_layers();
    let mut l = BlobLayer::gzip(top);
    l.diff_id = Digest::of(b"something else");
    write_layout(
        &t.join("layout"),
        &[BlobLayer::plain(base.clone()), l],
        "d:1",
    );
    let err = import_fails(&t, &t.join("layout"));
    assert!(
        matches!(unpack_error(&err), UnpackError::DiffIdMismatch { .. }),
        "{err}"
    );

    let t = TempDir::new("count");
    let l = BlobLayer::plain(base);
    let cfg = config_json(&[], "amd64");
    let mut d = write_manifest(&t.join("layout"), &[l], &cfg, oci::OCI_CONFIG);
    d.annotations.insert(oci::REF_NAME.into(), "n:1".into());
    write_index(&t.join("layout"), vec![d]);
    let err = import_fails(&t, &t.join("layout"));
    assert!(
        matches!(
            err,
            Error::Import(ImportError::LayerCount {
                layers: 1,
                diff_ids: 0
            })
        ),
        "{err}"
    );
}

#[test]
fn a_failure_keeps_what_other_images_use() {
    if !root_or_skip("a_failure_keeps_what_other_images_use") {
        return;
    }
    // A good image first; then a bad one sharing its base layer: the failure
    // must not take the shared blob or snapshot with it.
    let t = TempDir::new("shared");
    let top = Layer::new().file("good", b"yes", 0o644).finish();
    write_layout(
        &t.join("good"),
        &[BlobLayer::plain(small_base()), BlobLayer::gzip(top)],
        "good:1",
    );
    let store = ImageStore::open(&t.join("store")).unwrap();
    store
        .import(&t.join("good"), &ImportOptions::default())
        .unwrap();
    let blobs = store.content().list().unwrap();
    let snaps = store.meta().snapshots().unwrap();
    let bad = Layer::new().file("../x", b"x", 0o644).finish();
    let dir = layout_with(&t, bad);
    let err = store.import(&dir, &ImportOptions::default()).unwrap_err();
    assert!(
        matches!(unpack_error(&err), UnpackError::PathTraversal { .. }),
        "{err}"
    );
    assert_eq!(store.content().list().unwrap(), blobs);
    assert_eq!(store.meta().snapshots().unwrap(), snaps);
    assert_eq!(store.list().unwrap().len(), 1);
    store.unpack("good:1").unwrap();
}
