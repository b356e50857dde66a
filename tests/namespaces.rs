//! `--pid`, `--ipc`, `--uts` (CreateContainer's pid, ipc, uts) end to end
//! in a box, and the cgroup namespace every container has: `host` sees the
//! box's systemd as pid 1 and its hostname, `container:ID` sees that
//! container's processes, IPC namespace and hostname, a bundle and a berth@
//! unit's TOML take them too, and every bad input is refused by name with
//! nothing left behind.

mod common;
#[allow(unused_imports)]
use common::*;

use std::time::Instant;

#[test]
fn pid_ipc_and_uts_namespaces() {
    let Some(b) = berth_box::up_or_skip("namespaces") else {
        return;
    };
    install_berthd(&b, "");
    b.sh_ok(MAKE_ARCHIVE);
    ctl_ok(&b, "image import /tmp/img/image.tar");
    let t0 = Instant::now();
    let run = |flags: &str, cmd: &str| {
        ctl_ok(&b, &format!("run --rm {flags} local/bb:1 {cmd}"))
            .trim()
            .to_string()
    };

    // The pid namespace: its own (the command is pid 1), the host's (the
    // box's systemd is), or a running container's (its sleep is).
    assert_eq!(run("", "cat /proc/1/comm"), "cat");
    assert_eq!(run("--pid private", "cat /proc/1/comm"), "cat");
    assert_eq!(run("--pid host", "cat /proc/1/comm"), "systemd");
    ctl_ok(
        &b,
        "run -d --name a --hostname a-host local/bb:1 sleep 1000",
    );
    assert_eq!(run("--pid container:a", "cat /proc/1/comm"), "sleep");
    let ps = run("--pid container:a", "busybox ps -o comm");
    assert!(ps.lines().any(|l| l.trim() == "sleep"), "{ps}");

    // The cgroup namespace: rooted at the container's own scope (the init
    // sets up its mounts while berthd places it, and unshares it only once
    // placed), so its cgroup is "/" in every hierarchy.
    let cgroups = run("", "cat /proc/self/cgroup");
    assert!(
        cgroups.lines().all(|l| l.ends_with(":/")),
        "the container's cgroup is its cgroup namespace's root: {cgroups}"
    );

    // The IPC namespace: the same inode as a's, a new one without.
    let ns_of_a = ctl_ok(&b, "exec a busybox readlink /proc/self/ns/ipc");
    let joined = run("--ipc container:a", "busybox readlink /proc/self/ns/ipc");
    assert_eq!(joined, ns_of_a.trim());
    let own = run("", "busybox readlink /proc/self/ns/ipc");
    assert_ne!(own, ns_of_a.trim());
    let host = b.sh_ok("readlink /proc/self/ns/ipc");
    assert_eq!(
        run("--ipc host", "busybox readlink /proc/self/ns/ipc"),
        host.trim()
    );

    // The UTS namespace: the box's hostname, a's, or its own.
    let box_name = b.sh_ok("hostname");
    assert_eq!(run("--uts host", "hostname"), box_name.trim());
    assert_eq!(run("--uts container:a", "hostname"), "a-host");
    assert_eq!(run("--hostname mine", "hostname"), "mine");
    // Nobody renamed the box or a.
    assert_eq!(b.sh_ok("hostname"), box_name);
    assert_eq!(ctl_ok(&b, "exec a hostname").trim(), "a-host");

    // A bundle takes them as an image's container does.
    let bundle = busybox_bundle("ns-pid-host", &["cat", "/proc/1/comm"]);
    let out = ctl_ok(
        &b,
        &format!("run --rm --pid host --bundle {}", bundle.path()),
    );
    assert_eq!(out.trim(), "systemd");

    // Bad inputs: named, and nothing left but a and the stopped one.
    ctl_ok(&b, "run --name done local/bb:1 echo");
    let refused = [
        (
            "--pid bogus",
            "option pid \"bogus\": want private, host or container:<id>",
        ),
        (
            "--ipc container:",
            "option ipc \"container:\": want private",
        ),
        (
            "--ipc container:nope",
            "option ipc container:nope: no container nope",
        ),
        (
            "--pid container:done",
            "option pid container:done: container done is",
        ),
        (
            "--uts host --hostname x",
            "option hostname goes not with uts host",
        ),
        (
            "--ipc host --sysctl kernel.shmmax=1",
            "belongs to the ipc namespace, which this container shares with the host",
        ),
    ];
    for (flags, want) in refused {
        let (code, out, err) = ctl(&b, &format!("run --rm {flags} local/bb:1 echo"));
        assert!(code != 0 && err.contains(want), "{flags}: {out}{err}");
    }
    let mut left: Vec<String> = ctl_ok(&b, "ps -a -q").lines().map(String::from).collect();
    left.sort();
    assert_eq!(left, ["a", "done"], "a refused create left a container");
    let bundles = b.sh_ok("ls /var/lib/berth/bundles");
    let mut bundles: Vec<&str> = bundles.split_whitespace().collect();
    bundles.sort();
    assert_eq!(bundles, ["a", "done"], "a refused create left a bundle");

    // A stopped a: its namespaces cannot be joined any more.
    ctl_ok(&b, "rm -f a");
    let (code, _, err) = ctl(&b, "run --rm --ipc container:a local/bb:1 echo");
    assert!(code != 0 && err.contains("no container a"), "{err}");
    ctl_ok(&b, "rm -f done");

    // A berth@ unit's TOML keys: the container sees the box's pid 1 and
    // hostname, and has an IPC namespace of its own.
    b.sh_ok(
        "mkdir -p /etc/berth/containers && printf '\
         image = \"local/bb:1\"\\ncommand = [\"sleep\", \"1000\"]\\n\
         pid = \"host\"\\nuts = \"host\"\\nipc = \"private\"\\nstop_timeout = 1\\n' \
         > /etc/berth/containers/nsu.toml && systemctl start berth@nsu.service",
    );
    assert_eq!(ctl_ok(&b, "exec nsu cat /proc/1/comm").trim(), "systemd");
    assert_eq!(ctl_ok(&b, "exec nsu hostname"), box_name);
    let ipc = ctl_ok(&b, "exec nsu busybox readlink /proc/self/ns/ipc");
    assert_ne!(ipc, host);
    b.sh_ok("systemctl stop berth@nsu.service; rm /etc/berth/containers/nsu.toml");
    eprintln!("namespace options checked in {:?}", t0.elapsed());
}
