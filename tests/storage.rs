//! Storage against a real berthd in a box: named volumes (made on first use,
//! filled from the image, kept across containers and a berthd restart, in
//! use while a container holds them), bind mounts, --mount, --tmpfs,
//! --read-only, --shm-size; and every bad mount refused by name, leaving no
//! container, volume or mount behind.

mod common;
#[allow(unused_imports)]
use common::*;

use berth_box::SystemdBox;

/// MAKE_ARCHIVE's busybox image with /data owned by 1000:1000 (mode 0750)
/// holding a file, and /escape a symlink that climbs out of any rootfs.
fn make_image(b: &SystemdBox) {
    let archive = MAKE_ARCHIVE
        .replace("timeout; do", "timeout stat touch; do")
        .replace(
            "tar -C layer --owner=0 --group=0 -cf layer.tar .",
            "chown -R 0:0 layer && mkdir -p layer/data && echo seeded > layer/data/seed && \
         chown -R 1000:1000 layer/data && chmod 750 layer/data && \
         ln -s ../../../../../../../../tmp/berth-escaped layer/escape && \
         tar -C layer --numeric-owner -cf layer.tar .",
        );
    b.sh_ok(&archive);
    ctl_ok(b, "image import /tmp/img/image.tar");
}

fn inspect_volume(b: &SystemdBox, name: &str) -> serde_json::Value {
    let out = ctl_ok(b, &format!("volume inspect {name}"));
    serde_json::from_str::<serde_json::Value>(&out).unwrap()[0].clone()
}

#[test]
fn volumes_keep_data_and_mounts_apply() {
    let Some(b) = berth_box::up_or_skip("storage_volumes") else {
        return;
    };
    install_berthd(&b, "");
    make_image(&b);

    // First use makes the volume and copies the image's /data in, owner and
    // mode kept: the image's user 1000 may write to it.
    let out = ctl_ok(
        &b,
        "run --rm -u 1000:1000 -v data:/data local/bb:1 sh -c 'cat /data/seed; stat -c %u:%g:%a /data; echo kept > /data/x'",
    );
    assert_eq!(out, "seeded\n1000:1000:750\n");
    assert_eq!(ctl_ok(&b, "volume ls -q"), "data\n");
    let v = inspect_volume(&b, "data");
    assert_eq!(v["Driver"], "local");
    assert_eq!(v["Mountpoint"], "/var/lib/berth/volumes/data/_data");
    assert_eq!(v["InUse"], false, "{v}");

    // The next container sees what the last one wrote (no second copy).
    b.sh_ok("rm /var/lib/berth/volumes/data/_data/seed");
    let out = ctl_ok(
        &b,
        "run --rm -u 1000:1000 -v data:/data local/bb:1 ls /data",
    );
    assert_eq!(out, "x\n");
    // ...and so after berthd restarts (the object is back on the bus).
    b.sh_ok("systemctl restart berthd");
    assert_eq!(
        ctl_ok(
            &b,
            "run --rm -u 1000:1000 -v data:/data:ro local/bb:1 cat /data/x"
        ),
        "kept\n"
    );
    assert_eq!(inspect_volume(&b, "data")["Name"], "data");
    let (code, _, _) = ctl(
        &b,
        "run --rm -u 1000:1000 -v data:/data:ro local/bb:1 touch /data/y",
    );
    assert_ne!(code, 0, ":ro let a write through");

    // Binds: read-only, and --mount's three types; --tmpfs with a size.
    b.sh_ok("mkdir -p /tmp/host && echo from-host > /tmp/host/f");
    let (code, out, _) = ctl(
        &b,
        "run --rm -v /tmp/host:/mnt/h:ro local/bb:1 sh -c 'cat /mnt/h/f; touch /mnt/h/g'",
    );
    assert_eq!(code, 1, "{out}");
    assert!(
        out.starts_with("from-host\n") && out.contains("Read-only file system"),
        "{out}"
    );
    b.sh_ok("test ! -e /tmp/host/g");
    let out = ctl_ok(
        &b,
        "run --rm -u 1000:1000 --mount type=bind,src=/tmp/host,dst=/b \
         --mount type=volume,source=data,target=/v,readonly \
         --mount type=tmpfs,dst=/t,tmpfs-size=2m \
         --tmpfs /scratch:size=1m,mode=1777 local/bb:1 \
         sh -c 'cat /b/f /v/x; grep -E \" /(t|scratch|v) \" /proc/mounts'",
    );
    assert!(out.starts_with("from-host\nkept\n"), "{out}");
    assert!(
        out.contains("tmpfs /t tmpfs rw,nosuid,nodev,noexec") && out.contains("size=2048k"),
        "{out}"
    );
    // tmpfs shows no mode= for 1777: the option won over the copied mode.
    assert!(
        out.lines().any(|l| l.contains(" /scratch tmpfs ")
            && l.contains("size=1024k")
            && !l.contains("mode=")),
        "{out}"
    );
    assert!(
        out.lines()
            .any(|l| l.contains(" /v ") && l.contains(" ro,")),
        "{out}"
    );

    // --read-only: the root refuses writes, /tmp and /run take them;
    // --shm-size sizes /dev/shm.
    let out = ctl_ok(
        &b,
        "run --rm --read-only --shm-size 3m local/bb:1 sh -c \
         'touch /etc/x 2>/dev/null && echo root-writable; touch /tmp/x /run/x && echo tmp-ok; \
          grep \" /dev/shm \" /proc/mounts'",
    );
    assert!(out.starts_with("tmp-ok\n"), "{out}");
    assert!(out.contains("size=3072k"), "{out}");

    // --device: the node in /dev with the host's numbers, the access asked
    // for enforced by the device cgroup (opened for writing, nothing written).
    let (code, out, _) = ctl(
        &b,
        "run --rm --device /dev/null:/dev/mynull --device /dev/kmsg:/dev/k:w local/bb:1 sh -c \
         'ls -l /dev/mynull; echo x > /dev/mynull && echo wrote-null; \
          (exec 3>/dev/k) 2>/dev/null && echo k-writable'",
    );
    assert_eq!(code, 0, "{out}");
    let ls = out.lines().next().unwrap_or_default();
    assert!(
        ls.starts_with("crw-rw-rw-") && ls.contains(" 1,   3 ") && ls.ends_with("/dev/mynull"),
        "{out}"
    );
    assert!(
        out.contains("wrote-null\nk-writable"),
        "/dev/kmsg is not in the default rules: the w asked for lets it open: {out}"
    );

    // A symlink in the image that climbs out: the mount lands inside the
    // rootfs (resolved as if the rootfs were /), never on the host.
    let out = ctl_ok(
        &b,
        "run --rm -v /tmp/host:/escape/m local/bb:1 cat /tmp/berth-escaped/m/f",
    );
    assert_eq!(out, "from-host\n");
    b.sh_ok("test ! -e /tmp/berth-escaped");

    // In use while a container holds it; -f removes the container first.
    ctl_ok(
        &b,
        "run -d --name holder -v data:/data local/bb:1 sleep 300",
    );
    let v = inspect_volume(&b, "data");
    assert_eq!(
        (v["InUse"].clone(), v["Containers"][0].clone()),
        (true.into(), "holder".into())
    );
    let (code, _, err) = ctl(&b, "volume rm data");
    assert_ne!(code, 0);
    assert!(err.contains("InUse") && err.contains("holder"), "{err}");
    b.sh_ok("test -e /var/lib/berth/volumes/data/_data/x");
    assert_eq!(ctl_ok(&b, "volume rm -f data"), "data\n");
    b.sh_ok("test ! -e /var/lib/berth/volumes/data");
    assert_eq!(ctl_ok(&b, "ps -a -q"), "");

    // The bus: reading is open to everyone, changing is root's (or polkit
    // io.berth.berth1.manage's).
    let nobody = |call: &str| {
        let o = b
            .sh(&format!(
                "setpriv --reuid=nobody --regid=nogroup --clear-groups \
                 busctl call io.berth.Berth1 /io/berth/Berth1 io.berth.Berth1.Volumes {call} 2>&1"
            ))
            .unwrap();
        (
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stdout).into_owned(),
        )
    };
    let (code, out) = nobody("ListVolumes");
    assert_eq!(code, 0, "{out}");
    let (code, out) = nobody("CreateVolume sa{sv} sneaky 0");
    assert!(
        code != 0 && out.contains("may not do this") && out.contains("io.berth.berth1.manage"),
        "{out}"
    );
    assert_eq!(ctl_ok(&b, "volume ls -q"), "");

    // create with labels, prune takes what no container uses.
    ctl_ok(&b, "volume create -l tier=db p1");
    assert_eq!(inspect_volume(&b, "p1")["Labels"]["tier"], "db");
    let (code, _, err) = ctl(&b, "volume create p1");
    assert!(code != 0 && err.contains("AlreadyExists"), "{err}");
    assert_eq!(ctl_ok(&b, "volume prune -f"), "p1\n");
    assert_eq!(ctl_ok(&b, "volume ls -q"), "");
}

#[test]
fn bad_mounts_are_refused_by_name_and_leave_nothing() {
    let Some(b) = berth_box::up_or_skip("storage_bad") else {
        return;
    };
    install_berthd(&b, "");
    make_image(&b);
    let mounts_before = b.sh_ok("wc -l < /proc/self/mountinfo");
    for (args, says) in [
        (
            "-v /no/such/dir:/x",
            "bind source /no/such/dir: no such file",
        ),
        ("-v rel/dir:/x", "a host path must be absolute"),
        ("-v ./dir:/x", "a host path must be absolute"),
        ("-v data:relative", "must be an absolute path"),
        ("-v /tmp:/proc", "nothing may be mounted over / or /proc"),
        (
            "-v /tmp:/proc/sys/kernel",
            "nothing may be mounted over / or /proc",
        ),
        ("-v /tmp:/", "nothing may be mounted over / or /proc"),
        ("-v /tmp:/a/../", "nothing may be mounted over / or /proc"),
        ("-v bad!name:/x", "a volume name is"),
        ("-v /tmp:/x:bogus", "unknown option \"bogus\""),
        ("-v /tmp", "want SRC:DST"),
        ("--mount type=nfs,dst=/x", "want type=bind|volume|tmpfs"),
        ("--mount type=bind,dst=/x", "want type=bind|volume|tmpfs"),
        ("--tmpfs /x:size=lots", "unknown option \"size=lots\""),
        ("-v /tmp:/x --tmpfs /x", "mounted twice"),
        (
            "--device /tmp",
            "device /tmp: not a character or block device",
        ),
        (
            "--device /dev/null:rel",
            "want HOST[:CONTAINER][:PERMISSIONS]",
        ),
        (
            "--device /dev/null:/dev/n:rwx",
            "want HOST[:CONTAINER][:PERMISSIONS]",
        ),
        (
            "--device /dev/nonesuch",
            "device /dev/nonesuch: no such file",
        ),
        // The volume this would make on first use goes with the failure.
        ("-v fresh:/f -v /no/such:/y", "bind source /no/such"),
    ] {
        let (code, out, err) = ctl(&b, &format!("run --rm {args} local/bb:1 true"));
        assert_ne!(code, 0, "{args}: {out}");
        assert!(
            err.contains(says) && err.contains("InvalidArgument"),
            "{args}: {err}"
        );
    }
    assert_eq!(ctl_ok(&b, "ps -a -q"), "");
    assert_eq!(ctl_ok(&b, "volume ls -q"), "");
    b.sh_ok("test -z \"$(ls /var/lib/berth/volumes 2>/dev/null)\"");
    b.sh_ok("test -z \"$(ls /var/lib/berth/bundles 2>/dev/null)\"");
    assert_eq!(b.sh_ok("wc -l < /proc/self/mountinfo"), mounts_before);
}
