//! Images end to end: a docker-save archive made with tar and sha256sum,
//! imported into berthd's store, run with `berthctl run IMAGE …`, removed and
//! pruned — against a real berthd in a box.

mod common;
#[allow(unused_imports)]
use common::*;

#[test]
fn images_import_run_remove_prune() {
    let Some(b) = berth_box::up_or_skip("berthctl_images") else {
        return;
    };
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    assert_eq!(
        ctl_ok(&b, "image import /tmp/img/image.tar").trim(),
        "docker.io/local/bb:1"
    );
    let ls = ctl_ok(&b, "image ls");
    assert!(ls.contains("docker.io/local/bb:1"), "{ls}");

    // The image's Cmd, Env and WorkingDir; then a command of ours.
    let (code, out, err) = ctl(&b, "run --rm local/bb:1");
    assert_eq!(
        (code, out.as_str()),
        (0, "default-cmd from-image\n"),
        "{err}"
    );
    assert_eq!(ctl_ok(&b, "run --rm local/bb:1 sh -c pwd"), "/tmp\n");
    // -u by name, resolved in the image's /etc/passwd.
    assert_eq!(ctl_ok(&b, "run --rm -u app local/bb:1 id -u"), "1000\n");
    // The rootfs is writable, and private to the container.
    assert_eq!(
        ctl_ok(
            &b,
            "run --rm local/bb:1 sh -c 'echo w > /etc/mark; cat /etc/mark'"
        ),
        "w\n"
    );
    assert_eq!(
        ctl(&b, "run --rm local/bb:1 cat /etc/mark").0,
        1,
        "a write leaked into the image"
    );
    // Overlay mounts of containers are gone with them.
    let mounts = b.sh_ok("grep -c /var/lib/berth/images/containers /proc/self/mountinfo || true");
    assert_eq!(mounts.trim(), "0");

    // A kept container holds its layers: removing the image name is fine,
    // prune keeps what the container uses until it is deleted.
    ctl_ok(&b, "run -d --name held local/bb:1 sleep 300");
    ctl_ok(&b, "image tag local/bb:1 local/bb:copy");
    ctl_ok(&b, "image rm local/bb:1 local/bb:copy");
    assert!(ctl_ok(&b, "image ls --json").trim() == "[]");
    let prune = ctl_ok(&b, "image prune");
    // Its layers are still there for it.
    assert_eq!(
        ctl_ok(&b, "exec held sh -c 'ls /bin/busybox'"),
        "/bin/busybox\n"
    );
    ctl_ok(&b, "rm -f held");
    let prune2 = ctl_ok(&b, "image prune");
    assert!(prune2.contains("snapshots"), "{prune} / {prune2}");
    let left = b.sh_ok("find /var/lib/berth/images/blobs -type f | wc -l");
    assert_eq!(left.trim(), "0", "blobs left after rm + prune");

    // Bad input: named errors, nothing created.
    let (code, _, err) = ctl(&b, "run --rm local/nothing:1 true");
    assert_eq!(code, 125);
    assert!(err.contains("NotFound"), "{err}");
    let (code, _, err) = ctl(&b, "image import /tmp/img/layer.tar");
    assert_eq!(code, 125);
    assert!(err.contains("InvalidArgument"), "{err}");
    b.sh_ok("head -c 20000 /tmp/img/image.tar > /tmp/img/cut.tar");
    let (code, _, err) = ctl(&b, "image import /tmp/img/cut.tar");
    assert_eq!(code, 125, "{err}");
    assert_eq!(ctl_ok(&b, "ps -a --json").trim(), "[]");
    assert_eq!(ctl_ok(&b, "image ls --json").trim(), "[]");
}

#[test]
fn pull_from_a_local_registry_with_progress() {
    for tool in ["docker-registry", "skopeo"] {
        if std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            println!("SKIP pull_from_a_local_registry_with_progress: {tool} is not installed (scripts/deps installs it)");
            return;
        }
    }
    let Some(b) = berth_box::up_or_skip("berthctl_pull") else {
        return;
    };
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    let port = start_registry(&b);
    b.sh_ok(&format!(
        "skopeo --insecure-policy copy --quiet --dest-tls-verify=false docker-archive:/tmp/img/image.tar docker://127.0.0.1:{port}/bb:1"
    ));
    let (code, out, err) = ctl(&b, &format!("image pull 127.0.0.1:{port}/bb:1"));
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), format!("127.0.0.1:{port}/bb:1"));
    // Not a terminal: one line per finished blob, from the PullProgress signals.
    assert!(err.contains(" done"), "no progress shown: {err}");
    assert_eq!(
        ctl_ok(&b, &format!("run --rm 127.0.0.1:{port}/bb:1 echo pulled")),
        "pulled\n"
    );
    let (code, _, err) = ctl(&b, &format!("image pull 127.0.0.1:{port}/bb:missing"));
    assert_eq!(code, 125);
    assert!(err.contains("NotFound"), "{err}");
    b.sh_ok("systemctl stop test-registry");
}

/// berthd.toml's `[[registry]]` mirrors: an image pulled under a foreign
/// name (`registry.example/team/bb:1`, a registry the box cannot reach) is
/// served by the loopback registry that mirrors it, past a dead mirror, and
/// keeps its name; what no mirror has fails with the registry's own error
/// and adds nothing; a wrong table stops berthd at start, named.
#[test]
fn pull_through_a_registry_mirror() {
    for tool in ["docker-registry", "skopeo"] {
        if std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .map_or(true, |o| !o.status.success())
        {
            println!("SKIP pull_through_a_registry_mirror: {tool} is not installed (scripts/deps installs it)");
            return;
        }
    }
    let Some(b) = berth_box::up_or_skip("berthctl_mirror") else {
        return;
    };
    let port = start_registry(&b);
    b.sh_ok(MAKE_ARCHIVE);
    b.sh_ok(&format!(
        "skopeo --insecure-policy copy --quiet --dest-tls-verify=false docker-archive:/tmp/img/image.tar docker://127.0.0.1:{port}/cache/registry.example/team/bb:1"
    ));
    // Port 1 on loopback: nothing listens, the first mirror is refused.
    let toml = format!(
        "[[registry]]\\nprefix = \"registry.example/team\"\\n\
         [[registry.mirror]]\\nlocation = \"127.0.0.1:1/dead\"\\n\
         [[registry.mirror]]\\nlocation = \"127.0.0.1:{port}/cache/registry.example/team\"\\n"
    );
    install_berthd(
        &b,
        &format!("mkdir -p /etc/berth && printf '{toml}' > /etc/berth/berthd.toml &&"),
    );
    let (code, out, err) = ctl(&b, "image pull registry.example/team/bb:1");
    assert_eq!(code, 0, "{out}{err}");
    assert_eq!(out.trim(), "registry.example/team/bb:1");
    let ls = ctl_ok(&b, "image ls");
    assert!(
        ls.contains("registry.example/team/bb") && !ls.contains("127.0.0.1"),
        "the image keeps the name it was asked for: {ls}"
    );
    assert_eq!(
        ctl_ok(&b, "run --rm registry.example/team/bb:1 echo mirrored"),
        "mirrored\n"
    );
    // Not at the mirror, and the registry itself is out of reach: its
    // error, nothing added.
    let (code, _, err) = ctl(&b, "image pull registry.example/team/bb:missing");
    assert_eq!(code, 125, "{err}");
    assert!(err.contains("registry.example"), "{err}");
    // Outside the prefix: no mirror is asked.
    let (code, _, err) = ctl(&b, "image pull registry.example/other/bb:1");
    assert_eq!(code, 125, "{err}");
    let ls = ctl_ok(&b, "image ls");
    assert_eq!(ls.matches("registry.example").count(), 1, "{ls}");

    // A URL where host[:port][/path] belongs: berthd refuses to start.
    b.sh_ok(
        "printf '[[registry]]\\nprefix = \"x.io\"\\n[[registry.mirror]]\\nlocation = \"http://m.example\"\\n' > /etc/berth/berthd.toml",
    );
    let restart = b.sh("systemctl restart berthd").unwrap();
    assert!(
        !restart.status.success(),
        "berthd started with a wrong [[registry]] table"
    );
    let journal = b.sh_ok("journalctl -b -u berthd -o cat --no-pager | tail -5");
    assert!(
        journal.contains("berthd.toml") && journal.contains("without a scheme"),
        "{journal}"
    );
    b.sh_ok("systemctl stop test-registry");
}
