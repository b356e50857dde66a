//! Where berth-runtime once differed from runc under real clients (podman,
//! containerd): each test fails on the old behaviour. Every container runs in
//! a box, with the cgroupfs driver unless said otherwise (the systemd driver
//! is covered by lifecycle.rs and berthd's suites).

mod common;

use common::{busybox_bundle, text, Bundle, Rt};
use serde_json::{json, Value};

/// A busybox bundle running `args`, with a writable root, edited by `edit`.
fn bundle(name: &str, args: &[&str], edit: impl FnOnce(&mut Value, &Bundle)) -> Bundle {
    let mut b = busybox_bundle(name, args);
    b.config["root"]["readonly"] = json!(false);
    let mut config = b.config.clone();
    edit(&mut config, &b);
    b.config = config;
    b.save();
    b
}

/// `run` in the foreground: the container's output and exit status.
fn run(rt: &Rt, id: &str, b: &Bundle) -> std::process::Output {
    rt.run(&["run", id, "--bundle", b.path()])
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn container_processes_lead_their_own_session() {
    let Some(b) = berth_box::up_or_skip("own_session") else {
        return;
    };
    let rt = Rt::new(&b, false);
    // `kill -9 0` signals the caller's whole process group when the
    // container shares it: runc's caller (conmon, a shim, this `run`) died.
    // (pid 1 itself is immune to a SIGKILL from inside: a child sends it.)
    let killer = bundle(
        "cs-kill",
        &["sh", "-c", "sh -c 'kill -9 0'; echo $?"],
        |_, _| {},
    );
    let out = run(&rt, "s1", &killer);
    assert!(out.status.success(), "run was killed: {}", text(&out));
    assert_eq!(stdout(&out).trim(), "137");
    // pid 1 leads its session; so does an exec'd process.
    let probe = "read a b c d e sid rest < /proc/self/stat; echo $$ $sid";
    let sleeper = bundle("cs-sess", &["sleep", "300"], |_, _| {});
    let out = rt.create("s2", &sleeper, "/tmp/s2.log");
    assert!(out.status.success(), "{}", text(&out));
    rt.ok(&["start", "s2"]);
    let init = rt.ok(&[
        "exec",
        "s2",
        "sh",
        "-c",
        "read a b c d e sid rest < /proc/1/stat; echo $sid",
    ]);
    assert_eq!(init.trim(), "1", "the init's session");
    let exec = rt.ok(&["exec", "s2", "sh", "-c", probe]);
    let ids: Vec<&str> = exec.split_whitespace().collect();
    assert_eq!(ids.len(), 2, "{exec}");
    assert_eq!(
        ids[0], ids[1],
        "an exec'd process leads its session: {exec}"
    );
    let out = rt.run(&["exec", "s2", "sh", "-c", "kill -9 0"]);
    assert_eq!(
        out.status.code(),
        Some(137),
        "exec was killed: {}",
        text(&out)
    );
    assert_eq!(rt.status("s2"), "running");
    rt.ok(&["delete", "-f", "s2"]);
}

#[test]
fn a_seccomp_profile_without_close_range_runs() {
    let Some(b) = berth_box::up_or_skip("no_close_range") else {
        return;
    };
    let rt = Rt::new(&b, false);
    for (i, (nnp, action)) in [
        (true, "SCMP_ACT_ERRNO"),
        (false, "SCMP_ACT_ERRNO"),
        (true, "SCMP_ACT_KILL_PROCESS"),
    ]
    .into_iter()
    .enumerate()
    {
        let c = bundle("cr", &["echo", "ran"], |c, _| {
            c["process"]["noNewPrivileges"] = json!(nnp);
            c["linux"]["seccomp"] = json!({
                "defaultAction": "SCMP_ACT_ALLOW",
                "syscalls": [{"names": ["close_range"], "action": action}],
            });
        });
        let out = run(&rt, &format!("cr{i}"), &c);
        assert!(out.status.success(), "nnp {nnp} {action}: {}", text(&out));
        assert_eq!(stdout(&out).trim(), "ran");
    }
}

#[test]
fn start_reports_why_the_init_failed_after_create() {
    let Some(b) = berth_box::up_or_skip("start_reports") else {
        return;
    };
    let rt = Rt::new(&b, false);
    // execve refused by the container's own filter (loaded last, with
    // no_new_privs): the create succeeds, the start must not.
    let c = bundle("sr-exec", &["echo", "ran"], |c, _| {
        c["process"]["noNewPrivileges"] = json!(true);
        c["linux"]["seccomp"] = json!({
            "defaultAction": "SCMP_ACT_ALLOW",
            "syscalls": [{"names": ["execve"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13}],
        });
    });
    let out = rt.create("sr1", &c, "/tmp/sr1.log");
    assert!(out.status.success(), "{}", text(&out));
    let out = rt.run(&["start", "sr1"]);
    assert!(!out.status.success(), "start succeeded: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("exec /bin/echo: permission denied"), "{err}");
    rt.ok(&["delete", "-f", "sr1"]);
    // A failing startContainer hook is named, with its status.
    let c = bundle("sr-hook", &["echo", "ran"], |c, _| {
        c["hooks"] = json!({"startContainer": [{"path": "/bin/false", "args": ["false"]}]});
    });
    let out = rt.create("sr2", &c, "/tmp/sr2.log");
    assert!(out.status.success(), "{}", text(&out));
    let out = rt.run(&["start", "sr2"]);
    assert!(!out.status.success(), "start succeeded: {}", text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("startContainer") && err.contains("/bin/false"),
        "{err}"
    );
    rt.ok(&["delete", "-f", "sr2"]);
}

#[test]
fn tmpcopyup_and_recursive_mount_options_are_applied() {
    let Some(b) = berth_box::up_or_skip("tmpcopyup_rro") else {
        return;
    };
    let rt = Rt::new(&b, false);
    // A host directory with a mount inside it: `rro` must reach the submount.
    let src = format!("/run/{}", berth_box::bundle::unique("rro"));
    b.sh_ok(&format!("mkdir -p {src}/sub && mount -t tmpfs t {src}/sub"));
    let probe = "cat /data/seed; stat -c %a /data; \
                 touch /mnt/sub/f 2>/dev/null && echo writable || echo read-only";
    let c = bundle("cu", &["sh", "-c", probe], |c, b| {
        std::fs::create_dir_all(b.dir.join("rootfs/data")).unwrap();
        std::fs::write(b.dir.join("rootfs/data/seed"), "from-the-image\n").unwrap();
        std::fs::set_permissions(
            b.dir.join("rootfs/data"),
            std::os::unix::fs::PermissionsExt::from_mode(0o1777),
        )
        .unwrap();
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.push(
            json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                           "options": ["nosuid", "tmpcopyup"]}),
        );
        mounts.push(json!({"destination": "/mnt", "type": "bind", "source": src,
                           "options": ["rbind", "rro"]}));
    });
    let out = run(&rt, "cu1", &c);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(
        stdout(&out).split_whitespace().collect::<Vec<_>>(),
        ["from-the-image", "1777", "read-only"]
    );
    b.sh_ok(&format!("umount {src}/sub; rm -r {src}"));
}

#[test]
fn proc_on_a_symlink_is_refused_and_relative_masks_apply() {
    let Some(b) = berth_box::up_or_skip("proc_symlink") else {
        return;
    };
    let rt = Rt::new(&b, false);
    let c = bundle("ps", &["true"], |_, b| {
        let proc_dir = b.dir.join("rootfs/proc");
        std::fs::remove_dir(&proc_dir).unwrap();
        std::os::unix::fs::symlink("tmp", &proc_dir).unwrap();
    });
    let out = rt.create("ps1", &c, "/tmp/ps1.log");
    assert!(!out.status.success(), "created: {}", text(&out));
    let log = b.sh_ok("cat /tmp/ps1.log");
    assert!(log.contains("ordinary directory"), "{log}");
    common::assert_nothing_left(&rt, "ps1");
    // runc takes relative maskedPaths/readonlyPaths relative to the root.
    let c = bundle("mk", &["sh", "-c", "cat /etc/secret; echo end"], |c, b| {
        std::fs::write(b.dir.join("rootfs/etc/secret"), "s3cret\n").unwrap();
        c["linux"]["maskedPaths"] = json!(["etc/secret"]);
        c["linux"]["readonlyPaths"] = json!(["tmp"]);
    });
    let out = run(&rt, "mk1", &c);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out).trim(), "end");
}

/// The mount points of the box's (the "host's") mount namespace.
fn host_mounts(b: &berth_box::SystemdBox) -> Vec<String> {
    let mut v: Vec<String> = b
        .sh_ok("cat /proc/self/mountinfo")
        .lines()
        .filter_map(|l| l.split_whitespace().nth(4).map(String::from))
        .collect();
    v.sort();
    v
}

#[test]
fn shared_rootfs_propagation_works_and_leaks_no_mount() {
    let Some(b) = berth_box::up_or_skip("shared_propagation") else {
        return;
    };
    let rt = Rt::new(&b, false);
    let before = host_mounts(&b);
    for (i, prop) in ["shared", "rshared"].into_iter().enumerate() {
        let id = format!("sp{i}");
        let c = bundle("sp", &["sleep", "300"], |c, _| {
            c["linux"]["rootfsPropagation"] = json!(prop);
        });
        let out = rt.create(&id, &c, &format!("/tmp/{id}.log"));
        assert!(out.status.success(), "{prop}: {}", text(&out));
        rt.ok(&["start", &id]);
        assert_eq!(host_mounts(&b), before, "{prop}: mounts reached the host");
        rt.ok(&["delete", "-f", &id]);
        assert_eq!(host_mounts(&b), before, "{prop}: mounts left after delete");
    }
}

#[test]
fn specs_without_namespaces_or_proc_run() {
    let Some(b) = berth_box::up_or_skip("no_namespaces") else {
        return;
    };
    let rt = Rt::new(&b, false);
    let none = bundle("nn", &["echo", "ran"], |c, _| {
        c["linux"]["namespaces"] = json!([]);
        c["mounts"] = json!([]);
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
        c["hostname"] = json!("");
    });
    let out = run(&rt, "nn1", &none);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out).trim(), "ran");
    let no_proc = bundle("np", &["echo", "ran"], |c, _| {
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| m["destination"] != "/proc");
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
    });
    let out = run(&rt, "np1", &no_proc);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out).trim(), "ran");
}

#[test]
fn a_read_only_root_in_a_user_namespace_runs() {
    let Some(b) = berth_box::up_or_skip("readonly_userns") else {
        return;
    };
    let rt = Rt::new(&b, false);
    let probe = "touch /x 2>/dev/null && echo writable || echo read-only";
    let c = bundle("ru", &["sh", "-c", probe], |c, _| {
        c["root"]["readonly"] = json!(true);
        // The box's /proc has a read-only /proc/sys on it, so the kernel
        // refuses a proc (and sysfs) mount in a user namespace there.
        let mounts = c["mounts"].as_array_mut().unwrap();
        mounts.retain(|m| {
            m["destination"]
                .as_str()
                .is_some_and(|d| d.starts_with("/dev"))
        });
        c["linux"]["maskedPaths"] = json!([]);
        c["linux"]["readonlyPaths"] = json!([]);
        let ns = c["linux"]["namespaces"].as_array_mut().unwrap();
        ns.push(json!({"type": "user"}));
        let map = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        c["linux"]["uidMappings"] = map.clone();
        c["linux"]["gidMappings"] = map;
    });
    let out = run(&rt, "ru1", &c);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(stdout(&out).trim(), "read-only");
}

#[test]
fn exec_ignore_paused_runs_once_resumed() {
    let Some(b) = berth_box::up_or_skip("ignore_paused") else {
        return;
    };
    let rt = Rt::new(&b, false);
    let c = bundle("ip", &["sleep", "300"], |_, _| {});
    let out = rt.create("ip1", &c, "/tmp/ip1.log");
    assert!(out.status.success(), "{}", text(&out));
    rt.ok(&["start", "ip1"]);
    rt.ok(&["pause", "ip1"]);
    let refused = rt.run(&["exec", "ip1", "true"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    // Its output goes to a file: the frozen process holds what it inherited.
    let argv = rt.argv(&["exec", "-d", "--ignore-paused", "ip1", "touch", "/tmp/ran"]);
    b.sh_ok(&format!(
        "{} >/tmp/ip1.exec 2>&1 </dev/null",
        common::shell_join(&argv)
    ));
    let ran = rt.b.sh(&format!(
        "test -e {}/tmp/ran",
        c.dir.join("rootfs").display()
    ));
    assert!(!ran.unwrap().status.success(), "ran while paused");
    rt.ok(&["resume", "ip1"]);
    rt.ok(&[
        "exec",
        "ip1",
        "sh",
        "-c",
        "while ! test -e /tmp/ran; do sleep 0.05; done",
    ]);
    rt.ok(&["delete", "-f", "ip1"]);
}

#[test]
fn a_creator_killed_mid_create_leaves_what_delete_removes() {
    let Some(b) = berth_box::up_or_skip("killed_create") else {
        return;
    };
    let rt = Rt::new(&b, false);
    let marker = format!("/run/{}", berth_box::bundle::unique("kc"));
    let cgroup = format!("/berth-compat-{}/kc1", std::process::id());
    let hook = format!("echo $$ > {marker}; exec sleep 60");
    let c = bundle("kc", &["true"], |c, _| {
        c["linux"]["cgroupsPath"] = json!(cgroup);
        c["hooks"] = json!({"createRuntime": [{"path": "/bin/sh", "args": ["sh", "-c", hook]}]});
    });
    let argv = rt.argv(&["create", "kc1", "--bundle", c.path()]);
    let pid = b.sh_ok(&format!(
        "{} >/dev/null 2>&1 </dev/null & echo $!",
        common::shell_join(&argv)
    ));
    b.sh_ok(&format!("while ! test -s {marker}; do sleep 0.02; done"));
    // Until create returns, the container is `creating`: not there for kill.
    assert_eq!(rt.status("kc1"), "creating");
    let refused = rt.run(&["kill", "kc1", "KILL"]);
    assert!(!refused.status.success(), "{}", text(&refused));
    // The creator dies inside its hook: cgroup made, record written.
    b.sh_ok(&format!("kill -9 {} $(cat {marker})", pid.trim()));
    let dir = format!("/sys/fs/cgroup{cgroup}");
    b.sh_ok(&format!("test -d {dir}"));
    rt.ok(&["delete", "--force", "kc1"]);
    let left = b.sh(&format!("test -e {dir}")).unwrap();
    assert!(!left.status.success(), "{dir} left behind");
    common::assert_nothing_left(&rt, "kc1");
    b.sh_ok(&format!(
        "rmdir /sys/fs/cgroup/berth-compat-{}",
        std::process::id()
    ));
}
