//! Importing, unpacking, mounting, saving, tagging, removing and collecting
//! images built by the tests from the host's busybox.

mod common;

use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::process::Command;

use berth_image::import::ImportError;
use berth_image::oci::{self, Platform};
use berth_image::{Error, ImageStore, ImportOptions, SpecOptions};
use common::*;

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let n = std::ffi::CString::new(name).unwrap();
    let mut buf = [0u8; 64];
    // SAFETY: valid C strings and buffer.
    let r = unsafe { libc::lgetxattr(c.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    (r >= 0).then(|| buf[..r as usize].to_vec())
}

#[test]
fn import_oci_layout_unpacks_every_kind_of_entry() {
    if !root_or_skip("import_oci_layout_unpacks_every_kind_of_entry") {
        return;
    }
    let t = TempDir::new("oci");
    let layout = t.join("layout");
    let desc = busybox_layout(&layout, "localhost/busybox:test");
    let store = ImageStore::open(&t.join("store")).unwrap();
    let recs = store.import(&layout, &ImportOptions::default()).unwrap();
    assert_eq!(recs.len(), 1);
    let rec = &recs[0];
    assert_eq!(rec.name, "localhost/busybox:test");
    assert_eq!(rec.manifest, desc.digest);
    assert_eq!(rec.platform, Platform::parse("linux/amd64").unwrap());
    assert_eq!(rec.layers.len(), 2);
    assert_eq!(store.resolve("localhost/busybox:test").unwrap(), *rec);
    assert_eq!(store.resolve(&rec.config.hex()[..8]).unwrap(), *rec);
    assert_eq!(store.list().unwrap(), recs);

    let lowers = store.unpack("localhost/busybox:test").unwrap();
    let (base, top) = (&lowers[0], &lowers[1]);
    // Base: hardlink, symlinks kept verbatim, owner, xattr, device, fifo, sticky dir.
    let bb = fs::metadata(base.join("bin/busybox")).unwrap();
    assert_eq!(bb.nlink(), 2);
    assert_eq!(bb.ino(), fs::metadata(base.join("bin/sh")).unwrap().ino());
    assert_eq!(bb.mode() & 0o7777, 0o755);
    assert_eq!(
        fs::read_link(base.join("bin/ls")).unwrap(),
        Path::new("/bin/busybox")
    );
    let prof = fs::metadata(base.join("home/app/.profile")).unwrap();
    assert_eq!(
        (prof.uid(), prof.gid(), prof.mode() & 0o777),
        (1000, 1000, 0o600)
    );
    assert_eq!(
        xattr(&base.join("xattr-file"), "user.berth").as_deref(),
        Some(&b"yes"[..])
    );
    let null = fs::metadata(base.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), libc::makedev(1, 3));
    assert!(fs::metadata(base.join("run/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(
        fs::metadata(base.join("tmp")).unwrap().permissions().mode() & 0o7777,
        0o1777
    );
    assert_eq!(
        fs::metadata(base.join("data")).unwrap().mtime(),
        1_700_000_000
    );
    // Top: whiteout as a 0:0 char device, opaque dir, hardlink into the lower
    // layer copied, setuid kept, aufs metadata skipped.
    let wh = fs::symlink_metadata(top.join("gone")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0);
    assert_eq!(
        xattr(&top.join("data"), "trusted.overlay.opaque").as_deref(),
        Some(&b"y"[..])
    );
    assert!(!top.join(".wh..wh.plnk").exists() && !top.join(".wh.gone").exists());
    assert_eq!(
        fs::read(top.join("bin/cat")).unwrap(),
        fs::read(BUSYBOX).unwrap()
    );
    assert_eq!(
        fs::metadata(top.join("usr/bin/su-like")).unwrap().mode() & 0o7777,
        0o4755
    );

    // Importing again is a no-op for blobs and snapshots.
    let blobs = store.content().list().unwrap();
    store.import(&layout, &ImportOptions::default()).unwrap();
    assert_eq!(store.content().list().unwrap(), blobs);
    assert_eq!(store.meta().snapshots().unwrap().len(), 2);
}

#[test]
fn overlay_rootfs_runs_busybox_and_spec_follows_the_image() {
    if !root_or_skip("overlay_rootfs_runs_busybox_and_spec_follows_the_image") {
        return;
    }
    if let Err(e) = berth_image::rootfs::overlay_available() {
        println!("SKIP overlay_rootfs_runs_busybox_and_spec_follows_the_image: {e}");
        return;
    }
    let t = TempDir::new("overlay");
    busybox_layout(&t.join("layout"), "busybox:ovl");
    let store = ImageStore::open(&t.join("store")).unwrap();
    store
        .import(&t.join("layout"), &ImportOptions::default())
        .unwrap();
    let rootfs = store.create_rootfs("c1", "busybox:ovl").unwrap();
    assert!(matches!(
        store.create_rootfs("c1", "busybox:ovl"),
        Err(Error::RootfsExists(_))
    ));
    let root = match store.mount_rootfs("c1") {
        Ok(r) => r,
        Err(e) => {
            // e.g. a host whose /tmp is itself an overlay or lacks trusted xattrs
            store.remove_rootfs("c1").unwrap();
            println!("SKIP overlay_rootfs_runs_busybox_and_spec_follows_the_image: cannot mount overlay: {e}");
            return;
        }
    };
    assert_eq!(store.mount_rootfs("c1").unwrap(), root); // idempotent
    assert!(!root.join("gone").exists(), "whiteout hides the lower file");
    let mut data: Vec<String> = fs::read_dir(root.join("data"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    data.sort();
    assert_eq!(data, ["c"], "opaque dir hides the lower entries");
    let out = Command::new("chroot")
        .arg(&root)
        .args([
            "/bin/sh",
            "-c",
            "echo hi > /tmp/x && cat /tmp/x && ls /data",
        ])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi\nc\n");
    // Writes land in the container's upper dir, never in a snapshot.
    assert!(rootfs.upper().join("tmp/x").exists());
    assert!(!rootfs.lowers[0].join("tmp/x").exists());

    let spec = store
        .generate_spec("busybox:ovl", &root, &SpecOptions::default())
        .unwrap();
    let p = spec.process().as_ref().unwrap();
    assert_eq!(p.args().as_ref().unwrap(), &["/bin/sh", "-c", "echo hello"]);
    assert_eq!((p.user().uid(), p.user().gid()), (1000, 1000));
    assert_eq!(p.user().additional_gids().as_ref().unwrap(), &[10]);
    assert_eq!(p.cwd(), Path::new("/data"));
    let env = p.env().as_ref().unwrap();
    for want in ["PATH=/bin:/usr/bin", "MODE=test", "HOME=/home/app"] {
        assert!(env.iter().any(|e| e == want), "{want} in {env:?}");
    }
    assert_eq!(spec.annotations().as_ref().unwrap()["org.example"], "berth");
    assert_eq!(spec.root().as_ref().unwrap().path(), &root);
    let opts = SpecOptions {
        args: Some(vec!["/bin/true".into()]),
        user: Some("root".into()),
        ..SpecOptions::default()
    };
    let spec = store.generate_spec("busybox:ovl", &root, &opts).unwrap();
    assert_eq!(
        spec.process().as_ref().unwrap().args().as_ref().unwrap(),
        &["/bin/true"]
    );
    assert_eq!(spec.process().as_ref().unwrap().user().uid(), 0);

    // The image can go while the container lives: its snapshots stay.
    store.remove("busybox:ovl").unwrap();
    let report = store.gc().unwrap();
    assert!(report.snapshots.is_empty(), "{report:?}");
    assert!(root.join("bin/busybox").exists());
    store.unmount_rootfs("c1").unwrap();
    assert!(!berth_image::rootfs::is_mounted(&root).unwrap());
    assert!(store.remove_rootfs("c1").unwrap());
    assert!(!rootfs.dir.exists());
    assert!(!store.remove_rootfs("c1").unwrap());
    let report = store.gc().unwrap();
    assert_eq!(report.snapshots.len(), 2, "{report:?}");
    assert_empty(&store);
}

#[test]
fn docker_archive_import_and_oci_round_trip() {
    if !root_or_skip("docker_archive_import_and_oci_round_trip") {
        return;
    }
    let t = TempDir::new("docker");
    let (base, top) = busybox_layers();
    let tar = docker_archive(
        &[base.clone(), top.clone()],
        &["busybox:saved", "busybox:alias"],
    );
    fs::write(t.join("saved.tar"), &tar).unwrap();
    fs::write(t.join("saved.tar.gz"), gzip(&tar)).unwrap();
    let store = ImageStore::open(&t.join("store")).unwrap();
    let recs = store
        .import(&t.join("saved.tar"), &ImportOptions::default())
        .unwrap();
    let names: Vec<&str> = recs.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "docker.io/library/busybox:saved",
            "docker.io/library/busybox:alias"
        ]
    );
    assert_eq!(recs[0].manifest, recs[1].manifest);
    assert_eq!(recs[0].layers[0].media_type, oci::OCI_LAYER);
    let info = store.inspect("busybox:saved").unwrap();
    assert_eq!(info.config.config.cmd, ["/bin/sh", "-c", "echo hello"]);
    assert_eq!(info.names.len(), 2);
    assert_eq!(info.config_json["history"][0]["created_by"], "berth tests");
    // Gzipped archive, with a name of our own: same content, no new blobs.
    let blobs = store.content().list().unwrap();
    let opts = ImportOptions {
        name: Some("example.com/bb:gz".into()),
        ..ImportOptions::default()
    };
    let gz = store.import(&t.join("saved.tar.gz"), &opts).unwrap();
    assert_eq!(gz[0].name, "example.com/bb:gz");
    assert_eq!(store.content().list().unwrap(), blobs);

    // Save as an OCI layout and as an OCI tar; both import into a new store
    // with the same manifests and names.
    store
        .save(&["busybox:saved", "example.com/bb:gz"], &t.join("out"))
        .unwrap();
    assert!(matches!(
        store.save(&["busybox:saved"], &t.join("out")),
        Err(Error::Export(_))
    ));
    let mut archive = Vec::new();
    store.save_tar(&["busybox:alias"], &mut archive).unwrap();
    let other = ImageStore::open(&t.join("store2")).unwrap();
    let back = other
        .import(&t.join("out"), &ImportOptions::default())
        .unwrap();
    assert_eq!(back.len(), 2);
    assert_eq!(back[0].name, "docker.io/library/busybox:saved");
    assert_eq!(back[0].manifest, recs[0].manifest);
    assert_eq!(back[1].name, "example.com/bb:gz");
    let back = other
        .import_archive(&mut &archive[..], &ImportOptions::default())
        .unwrap();
    assert_eq!(back[0].name, "docker.io/library/busybox:alias");
    assert_eq!(back[0].manifest, recs[0].manifest);
    assert_eq!(other.list().unwrap().len(), 3);
}

#[test]
fn tag_remove_and_gc_follow_reference_counts() {
    if !root_or_skip("tag_remove_and_gc_follow_reference_counts") {
        return;
    }
    let t = TempDir::new("gc");
    busybox_layout(&t.join("layout"), "bb:1");
    let store = ImageStore::open(&t.join("store")).unwrap();
    let rec = store
        .import(&t.join("layout"), &ImportOptions::default())
        .unwrap()
        .remove(0);
    assert_eq!(rec.name, "docker.io/library/bb:1");
    let key = format!("blob:{}", rec.layers[0].digest);
    assert_eq!(store.meta().refcount(&key).unwrap(), 1);
    store.tag("bb:1", "bb:2").unwrap();
    assert_eq!(store.meta().refcount(&key).unwrap(), 2);
    assert!(matches!(store.tag("nope", "bb:3"), Err(Error::NoImage(_))));
    assert!(matches!(
        store.tag("bb:1", "Bad Name"),
        Err(Error::Reference(_))
    ));
    // Re-tagging a name onto the same image does not double count.
    store.tag("bb:1", "bb:2").unwrap();
    assert_eq!(store.meta().refcount(&key).unwrap(), 2);

    store.remove("bb:1").unwrap();
    assert!(matches!(store.remove("bb:1"), Err(Error::NoImage(_))));
    assert_eq!(store.gc().unwrap(), Default::default());
    assert_eq!(store.resolve("bb:2").unwrap().manifest, rec.manifest);

    // Leftovers of a crash: a staged blob, an unpack temp dir, an unrecorded snapshot.
    fs::write(store.root().join("ingest/blob-stale"), b"x").unwrap();
    fs::create_dir_all(store.root().join("snapshots/tmp/unpack-stale/fs")).unwrap();
    fs::create_dir_all(store.root().join("snapshots/999/fs")).unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.leftovers, 3);
    assert!(report.blobs.is_empty());

    store.remove("bb:2").unwrap();
    let report = store.gc().unwrap();
    assert_eq!(report.blobs.len(), 4, "manifest, config, two layers");
    assert_eq!(report.snapshots.len(), 2);
    assert!(report.bytes > 1_000_000, "busybox is in there");
    assert_empty(&store);
}

#[test]
fn multi_platform_index_picks_the_host() {
    if !root_or_skip("multi_platform_index_picks_the_host") {
        return;
    }
    let t = TempDir::new("index");
    let layout = t.join("layout");
    let amd_layer = BlobLayer::plain(Layer::new().file("arch", b"amd64", 0o644).finish());
    let amd_cfg = config_json(std::slice::from_ref(&amd_layer.diff_id), "amd64");
    let amd = write_manifest(
        &layout,
        std::slice::from_ref(&amd_layer),
        &amd_cfg,
        oci::OCI_CONFIG,
    );
    let arm_tar = Layer::new().file("arch", b"arm64", 0o644).finish();
    let arm_layer = BlobLayer::plain(arm_tar);
    let arm = write_manifest(
        &layout,
        std::slice::from_ref(&arm_layer),
        &config_json(std::slice::from_ref(&arm_layer.diff_id), "arm64"),
        oci::OCI_CONFIG,
    );
    let with = |mut d: oci::Descriptor, arch: &str| {
        d.platform = Platform::parse(&format!("linux/{arch}"));
        d
    };
    let index = oci::Index {
        schema_version: 2,
        media_type: Some(oci::OCI_INDEX.into()),
        manifests: vec![with(arm.clone(), "arm64"), with(amd.clone(), "amd64")],
        annotations: Default::default(),
        extra: Default::default(),
    };
    let bytes = serde_json::to_vec(&index).unwrap();
    let d = berth_image::Digest::of(&bytes);
    fs::write(layout.join("blobs/sha256").join(d.hex()), &bytes).unwrap();
    let mut top = oci::Descriptor::new(oci::OCI_INDEX, d.clone(), bytes.len() as u64);
    top.annotations
        .insert(oci::REF_NAME.into(), "multi:latest".into());
    write_index(&layout, vec![top]);

    let store = ImageStore::open(&t.join("store")).unwrap();
    let opts = ImportOptions {
        platform: Platform::parse("linux/amd64").unwrap(),
        ..ImportOptions::default()
    };
    let rec = store.import(&layout, &opts).unwrap().remove(0);
    assert_eq!(
        (rec.manifest.clone(), rec.index.clone()),
        (amd.digest, Some(d.clone()))
    );
    let lowers = store.unpack("multi").unwrap();
    assert_eq!(fs::read(lowers[0].join("arch")).unwrap(), b"amd64");
    // The index itself is not kept: only what the record names.
    store.gc().unwrap();
    assert!(!store.content().contains(&d));

    let other = ImageStore::open(&t.join("store2")).unwrap();
    let opts = ImportOptions {
        platform: Platform::parse("linux/s390x").unwrap(),
        ..ImportOptions::default()
    };
    let err = other.import(&layout, &opts).unwrap_err();
    assert!(
        matches!(err, Error::Import(ImportError::NoPlatform { .. })),
        "{err}"
    );
    assert!(
        err.to_string().contains("linux/arm64, linux/amd64"),
        "{err}"
    );
    other.gc().unwrap();
    assert_empty(&other);
}

/// berth inside another container: the state directory on overlayfs, whose
/// directories overlayfs refuses as upper dirs. A named error that says
/// what to do, not "EINVAL", and nothing left mounted.
#[test]
fn a_state_dir_on_overlayfs_is_a_named_error() {
    let test = "a_state_dir_on_overlayfs_is_a_named_error";
    if !root_or_skip(test) {
        return;
    }
    if let Err(e) = berth_image::rootfs::overlay_available() {
        println!("SKIP {test}: {e}");
        return;
    }
    let t = TempDir::new("on-overlay");
    busybox_layout(&t.join("layout"), "busybox:nested");
    let store = ImageStore::open(&t.join("store")).unwrap();
    store
        .import(&t.join("layout"), &ImportOptions::default())
        .unwrap();
    // The containers' directories (upper dirs) on an overlay: what a state
    // directory inside another container's rootfs is.
    for d in ["lower", "upper", "work"] {
        fs::create_dir_all(t.join(d)).unwrap();
    }
    let merged = store.root().join("containers");
    fs::create_dir_all(&merged).unwrap();
    let opts = format!(
        "lowerdir={},upperdir={},workdir={}",
        t.join("lower").display(),
        t.join("upper").display(),
        t.join("work").display()
    );
    let ok = Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &opts])
        .arg(&merged)
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        println!("SKIP {test}: cannot mount an overlay here (the temp dir on overlayfs?)");
        return;
    }
    store.create_rootfs("c1", "busybox:nested").unwrap();
    let result = store.mount_rootfs("c1");
    let _ = store.remove_rootfs("c1");
    let _ = Command::new("umount").arg("-R").arg(&merged).status();
    match result {
        Err(e @ Error::Rootfs(berth_image::rootfs::RootfsError::UpperOnOverlay(_))) => {
            assert_eq!(e.kind(), berth_image::ErrorKind::Unavailable);
            assert!(e.to_string().contains("/var/lib/berth"), "{e}");
        }
        // A kernel that takes overlay upper dirs on overlayfs: nothing to name.
        Ok(_) => println!("SKIP {test}: this kernel mounts an overlay upper on overlayfs"),
        Err(e) => panic!("want UpperOnOverlay, got {e:?}"),
    }
}
